#!/usr/bin/env bash
# Runs inside the test VM in place of tests/vm/harness/guest.sh, for
# bench/run-in-vm.sh: as root, chrooted into the host's root, with the
# results directory writable. Loads ion_simple.ko, runs ionsvc-bench
# ($IONVM_TEST_BINARY) once per backend and writes bench-<backend>.json and
# bench-<backend>.log; results.txt gets a PASS or FAIL line per backend and
# ends with "END <status>" (the host's collect() wants it).
#
# IONVM_GUEST_ARGS: --backends B1,B2,... then the bench's own arguments
# (--daemon PATH and what to measure); --backend and --json are added here.
set -uo pipefail

results=$IONVM_RESULTS_DIR
read -r -a arguments <<<"$IONVM_GUEST_ARGS"
backends=ion,dma-heap,udmabuf,memfd
if ((${#arguments[@]} >= 2)) && [[ ${arguments[0]} == --backends ]]; then
    backends=${arguments[1]}
    arguments=("${arguments[@]:2}")
fi

status=0
echo "ionvm: starting ionsvc-bench on $backends" >/dev/kmsg
if ! insmod "$ION_VM_MODULE_DIR/ion_simple.ko" >"$results/insmod.log" 2>&1; then
    echo "FAIL bench.LoadsIonSimple" >>"$results/results.txt"
    status=1
fi
for backend in ${backends//,/ }; do
    started=$SECONDS
    # Each run is bounded on its own; the VM's timeout bounds them all.
    if timeout -k 10 "$IONVM_GUEST_TIMEOUT" "$IONVM_TEST_BINARY" --backend "$backend" "${arguments[@]}" --json \
        >"$results/bench-$backend.json" 2>"$results/bench-$backend.log"; then
        echo "PASS bench.$backend ($((SECONDS - started)) s)" >>"$results/results.txt"
    else
        echo "FAIL bench.$backend (status $?, see bench-$backend.log)" >>"$results/results.txt"
        status=1
    fi
done
rmmod ion_simple 2>>"$results/insmod.log" || true
echo "ionvm: ionsvc-bench done, status $status" >/dev/kmsg
dmesg >"$results/dmesg.txt"
uname -r >"$results/kernel.txt"
echo "END $status" >>"$results/results.txt"
sync
