#!/usr/bin/env bash
# ionsvc-bench per backend inside the test VM (docs/PERFORMANCE.md, "Per
# backend (in QEMU)"): boots one Debian kernel once with the kernel tests'
# harness (tests/vm/harness/vm.sh), loads ion_simple.ko and runs the bench
# on each backend with its own ionsvcd (bench/vm-guest.sh). The JSON of each
# run comes back as OUT/results/bench-<backend>.json, its stderr as
# bench-<backend>.log.
#
# usage: bench/run-in-vm.sh [--build DIR] [--out DIR] [--series 6.12]
#                           [--backends ion,dma-heap,udmabuf,memfd]
#                           [-- BENCH ARGUMENTS]
# The bench's arguments default to a run of 6 to 10 minutes under TCG (an
# 8 MiB ION or udmabuf allocation takes tens of milliseconds there):
#   --iterations 600 --only daemon,prompt,floor,floor2,raw,rtt,batch --sizes 4K,64K,1M,8M
# Under TCG only the ratios mean anything, never the times.
# env: IONSVC_VM_TIMEOUT (the whole VM, default here 30m),
#      IONSVC_VM_GUEST_TIMEOUT (one backend's run, seconds, default here 900),
#      IONSVC_VM_CACHE (vm.sh's kernel cache)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(dirname "$here")
build=$source_dir/build
series=6.12
backends=ion,dma-heap,udmabuf,memfd
out=''
bench_arguments=(--iterations 600 --only daemon,prompt,floor,floor2,raw,rtt,batch --sizes 4K,64K,1M,8M)

die() {
    echo "run-in-vm.sh: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --) shift; bench_arguments=("$@"); break ;;
        --build | --out | --series | --backends)
            (($# >= 2)) || die "$1 needs a value"
            case $1 in
                --build) build=$2 ;;
                --out) out=$2 ;;
                --series) series=$2 ;;
                --backends) backends=$2 ;;
            esac
            shift 2
            ;;
        *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
    esac
done
out=${out:-$build/bench-vm-$series}
bench=$build/bench/ionsvc-bench
daemon=$build/daemon/ionsvcd
[[ -x $bench && -x $daemon ]] ||
    die "$bench or $daemon is missing: cmake --build $build --target ionsvc-bench ionsvcd"

export IONSVC_VM_TIMEOUT=${IONSVC_VM_TIMEOUT:-30m}
export IONSVC_VM_GUEST_TIMEOUT=${IONSVC_VM_GUEST_TIMEOUT:-900}
status=0
bash "$source_dir/tests/vm/harness/vm.sh" --series "$series" --source "$source_dir" --build "$build" \
    --test-binary "$bench" --out "$out" --guest-script "$here/vm-guest.sh" \
    --guest-args "--backends $backends --daemon $(realpath "$daemon") ${bench_arguments[*]}" || status=$?

results=$out/results
echo "run-in-vm.sh: kernel $(cat "$results/kernel.txt" 2>/dev/null || echo '?'), results in $results:"
grep -E '^(PASS|FAIL|END)' "$results/results.txt" 2>/dev/null || echo "(no results.txt)"
if command -v jq >/dev/null; then
    # The daemon's ratios per size, by default and with every Free at once
    # (prompt): to the floor, the two-trip floor and raw.
    for backend in ${backends//,/ }; do
        [[ -s $results/bench-$backend.json ]] || continue
        jq -r --arg b "$backend" '.[] | select(.kind == "daemon" or .kind == "prompt") |
            [$b, .name, .p50_us, .baseline_p50_us, .ratio, .ratio_two_trips, .raw_p50_us, .ratio_raw]
            | map(if type == "number" then (. * 100 | round / 100) elif . == null then "-" else . end) | @tsv' \
            "$results/bench-$backend.json"
    done | column -t -N backend,case,p50_us,floor_p50_us,ratio,ratio2,raw_p50_us,ratio_raw
fi
exit "$status"
