#!/usr/bin/env bash
# Runs ionsvc's kernel tests for one Debian kernel series in QEMU:
#   resolve  - newest Debian 12 kernel of the series with image and headers
#   fetch    - download and extract them into the cache (no host install)
#   build    - build ion_simple.ko and ion_test_importer.ko against them
#   initramfs- busybox, the 9p and vgem modules, our init
#   boot     - the kernel under TCG; the guest chroots into the host root
#              (9p, read-only) and runs ion_vm_test, writing results back
#              through a second, writable 9p share of <out>/results
#   collect  - the guest must have finished its result file with END
# Anything that stops it from running the tests is an error (exit 1): this
# script never reports success for a run that did not happen.
#
# usage: vm.sh --series 6.1 --source SRC_DIR --build BUILD_DIR
#              --test-binary ion_vm_test --out OUT_DIR
# env:   IONSVC_VM_CACHE (default /var/cache/ionsvc-vm)
#        IONSVC_VM_TIMEOUT (whole VM run, timeout(1) syntax; default 20m)
#        IONSVC_VM_GUEST_TIMEOUT (ion_vm_test in the guest, seconds; default 900)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IONSVC_VM_CACHE:-/var/cache/ionsvc-vm}
vm_timeout=${IONSVC_VM_TIMEOUT:-20m}
guest_timeout=${IONSVC_VM_GUEST_TIMEOUT:-900}
arch=amd64

log() { printf 'vm.sh [%4ds] %s\n' "$SECONDS" "$*"; }
die() {
    printf 'vm.sh [%4ds] ERROR: %s\n' "$SECONDS" "$*" >&2
    exit 1
}

parse_args() {
    series='' src='' build='' test_binary='' out=''
    while (($#)); do
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
            --series) series=$2 ;;
            --source) src=$2 ;;
            --build) build=$2 ;;
            --test-binary) test_binary=$2 ;;
            --out) out=$2 ;;
            *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
        esac
        shift 2
    done
    [[ $series =~ ^[0-9]+\.[0-9]+$ ]] || die "--series must look like 6.1, not '$series'"
    # Debian 12's versions of the series: 6.1 -> 6.1.0-N, 6.12 -> 6.12.N+deb12.
    version_re="${series//./\\.}\.[0-9]+(-[0-9]+)?(\+deb[0-9]+)?"
    [[ -d $src && -d $build && -n $out ]] || die "--source and --build must be directories, --out given"
    [[ -x $test_binary ]] || die "test binary '$test_binary' does not exist (was ion_vm_test built?)"
    mkdir -p "$out"
    src=$(realpath "$src") build=$(realpath "$build") out=$(realpath "$out")
    test_binary=$(realpath "$test_binary")
    results=$out/results
    local path
    # These paths go into QEMU options (commas split them) and into the
    # guest's single-quoted config.
    for path in "$here" "$src" "$build" "$out" "$test_binary"; do
        if [[ $path =~ [[:space:],\'\"\\\$\`] ]]; then
            die "path '$path' contains a space, comma, quote, backslash, \$ or backquote; the VM harness cannot pass it on"
        fi
    done
}

check_tools() {
    local tool missing=()
    for tool in qemu-system-x86_64 busybox cpio xz gzip make gcc apt-get apt-cache \
        dpkg-deb depmod modinfo flock timeout realpath; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}; run scripts/install-deps.sh"
    busybox=$(command -v busybox)
    # The initramfs has no libc: only busybox-static's binary works there.
    if ldd "$busybox" >/dev/null 2>&1; then
        die "$busybox is dynamically linked; install busybox-static"
    fi
}

# Prints the newest version of the series for which apt knows both the
# unsigned image and the headers.
newest_version() {
    local headers v
    headers=$(apt-cache pkgnames "linux-headers-$series.")
    for v in $(apt-cache pkgnames "linux-image-$series." |
        sed -nE "s/^linux-image-(${version_re})-${arch}-unsigned\$/\1/p" | sort -rV); do
        if grep -qxF "linux-headers-$v-$arch" <<<"$headers"; then
            echo "$v"
            return 0
        fi
    done
    return 1
}

resolve() {
    if ! version=$(newest_version); then
        log "apt knows no $series kernel with headers; running apt-get update"
        apt-get update -qq || die "apt-get update failed"
        version=$(newest_version) || die "no linux-image-$series.*-$arch-unsigned with matching linux-headers in apt's lists"
    fi
    tree=$cache/trees/$version
    krel=$version-$arch # uname -r
    log "kernel $krel"
}

# Downloads image, headers and the headers' common and kbuild packages into
# $cache/debs/$version.  Returns 1 (instead of exiting) when apt cannot get
# them, so that the caller can refresh stale lists and try again.
fetch() {
    local debs=$cache/debs/$version headers=linux-headers-$version-$arch deps tmp
    [[ -d $debs ]] && return 0
    deps=$(apt-cache depends "$headers" | sed -nE 's/^ *\|?Depends: (linux-(headers-[^ ]*-common|kbuild-[^ ]*))$/\1/p') || return 1
    [[ $(wc -l <<<"$deps") == 2 ]] || { log "cannot tell the common and kbuild packages of $headers: '$deps'"; return 1; }
    tmp=$cache/debs/.tmp-$version
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "downloading linux-image-$version-$arch-unsigned $headers ${deps//$'\n'/ }"
    # shellcheck disable=SC2086 # $deps is two package names
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root \
        "linux-image-$version-$arch-unsigned" "$headers" $deps) || return 1
    mv "$tmp" "$debs"
}

# Unpacks the debs into one root, points the headers at it and generates
# modules.dep (the image package leaves that to its postinst).
extract() {
    local tmp=$cache/trees/.tmp-$version deb makefile
    [[ -d $tree ]] && return 0
    log "extracting into $tree"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    for deb in "$cache/debs/$version"/*.deb; do
        dpkg-deb -x "$deb" "$tmp"
    done
    # The arch headers include the common ones by their installed path;
    # point that at where the tree will be after the rename below.
    makefile=$tmp/usr/src/linux-headers-$version-$arch/Makefile
    sed -i "s|^include /usr/src/|include $tree/usr/src/|" "$makefile"
    grep -q "^include $tree/usr/src/linux-headers-$version-common/Makefile\$" "$makefile" ||
        die "unexpected $makefile: $(cat "$makefile")"
    depmod -b "$tmp" "$krel"
    [[ -f $tmp/boot/vmlinuz-$krel && -s $tmp/lib/modules/$krel/modules.dep ]] ||
        die "the packages of $version have no vmlinuz or modules"
    mv "$tmp" "$tree"
    prune
}

# Drops the cached kernels of the series that a newer one replaced (about
# 0.5 GB each).
prune() {
    local dir
    for dir in "$cache"/trees/* "$cache"/debs/*; do
        [[ ${dir##*/} =~ ^${version_re}$ && ${dir##*/} != "$version" ]] || continue
        log "removing $dir, replaced by $version"
        rm -rf "$dir"
    done
}

prepare_kernel() {
    mkdir -p "$cache/debs" "$cache/trees" || die "cannot create the cache $cache (set IONSVC_VM_CACHE)"
    # The other series may run at the same time (ctest -j): one apt and one
    # cache writer at a time.  The lock goes with this process if it dies.
    local lock_fd
    exec {lock_fd}>>"$cache/lock"
    if ! flock -n "$lock_fd"; then
        log "waiting for $cache/lock (another run is fetching)"
        flock -w 1200 "$lock_fd" || die "waited 20 minutes for $cache/lock"
    fi
    resolve
    if [[ ! -d $tree ]] && ! fetch; then
        # Security updates replace kernels: the lists may name one the
        # archive no longer has.
        log "download failed; refreshing apt's lists and trying again"
        apt-get update -qq || die "apt-get update failed"
        resolve
        [[ -d $tree ]] || fetch || die "could not download the packages of kernel $version"
    fi
    extract
    exec {lock_fd}>&-
    kdir=$tree/usr/src/linux-headers-$version-$arch
    moddir=$tree/lib/modules/$krel
}

# Builds one module directory (a copy: the source tree stays clean and the
# two series do not share objects).
build_one() {
    local dir=$1
    shift
    make -C "$kdir" M="$dir" KCFLAGS=-Werror -j"$(nproc)" "$@" modules >>"$out/build.log" 2>&1 ||
        die "building $dir against $version failed:
$(tail -n 40 "$out/build.log")
(whole log: $out/build.log)"
}

build_modules() {
    local copy=$out/src ko
    log "building the modules (log: $out/build.log)"
    [[ -f $src/kernel/Kbuild ]] || die "$src/kernel/Kbuild does not exist"
    [[ -f $src/tests/vm/importer/Kbuild ]] || die "$src/tests/vm/importer/Kbuild does not exist"
    rm -rf "$copy" "$out/modules" "$out/build.log"
    # Same layout as the repository, so relative includes keep working.
    mkdir -p "$copy/tests/vm" "$out/modules"
    cp -a "$src/kernel" "$copy/kernel"
    cp -a "$src/tests/vm/importer" "$copy/tests/vm/importer"
    build_one "$copy/kernel"
    # In case the importer uses symbols that ion_simple exports.
    build_one "$copy/tests/vm/importer" KBUILD_EXTRA_SYMBOLS="$copy/kernel/Module.symvers"
    for ko in ion_simple ion_test_importer; do
        find "$copy" -name "$ko.ko" -exec cp {} "$out/modules/" \;
        [[ -f $out/modules/$ko.ko ]] || die "the build made no $ko.ko (see $out/build.log)"
        [[ $(modinfo -F vermagic "$out/modules/$ko.ko") == "$krel "* ]] ||
            die "$ko.ko was not built for $krel"
    done
}

# Sets the array `closure` to the module files (relative to $moddir), in load
# order, that loading the named modules needs; built-in modules need none.
# Returns 1 if a module is neither built in nor in modules.dep.
module_closure() {
    local -A file_of=() deps_of=() builtin=() seen=()
    local file deps name
    closure=()
    while IFS= read -r file; do
        name=${file##*/} name=${name%%.ko*}
        builtin[${name//-/_}]=1
    done <"$moddir/modules.builtin"
    while IFS=: read -r file deps; do
        name=${file##*/} name=${name%%.ko*}
        file_of[${name//-/_}]=$file
        deps_of[$file]=$deps
    done <"$moddir/modules.dep"
    visit() { # depth first: dependencies before the module
        local f=$1 d
        [[ -n ${seen[$f]:-} ]] && return 0
        seen[$f]=1
        for d in ${deps_of[$f]:-}; do visit "$d"; done
        closure+=("$f")
    }
    for name in "$@"; do
        [[ -n ${builtin[$name]:-} ]] && continue
        [[ -n ${file_of[$name]:-} ]] || return 1
        visit "${file_of[$name]}"
    done
}

# Copies the modules of `closure` into the initramfs, uncompressed (busybox
# insmod cannot decompress), and lists them in load order in $1.
stage_modules() {
    local list=$1 file ko
    : >"$list"
    for file in "${closure[@]}"; do
        ko=${file##*/}
        case $ko in
            *.ko.xz) xz -dc "$moddir/$file" >"$staging/lib/modules/${ko%.xz}" ;;
            *.ko) cp "$moddir/$file" "$staging/lib/modules/$ko" ;;
            *) die "cannot load $file: unknown compression" ;;
        esac
        echo "${ko%.xz}" >>"$list"
    done
}

make_initramfs() {
    staging=$out/initramfs
    log "making the initramfs"
    rm -rf "$staging"
    mkdir -p "$staging"/{bin,dev,proc,sys,host,stash,etc/ionvm,lib/modules}
    cp "$busybox" "$staging/bin/busybox"
    cp "$here/init" "$staging/init"
    chmod 755 "$staging/init"
    # Else the kernel has no console to give init (init reopens it anyway).
    if ((EUID == 0)); then mknod -m 600 "$staging/dev/console" c 5 1; fi

    # virtio_pci is built in on 6.12 but a module (with virtio) on 6.1.
    module_closure virtio_pci 9pnet_virtio 9p || die "kernel $version has no 9p over virtio"
    stage_modules "$staging/etc/ionvm/9p.list"
    expect_vgem=0
    if module_closure vgem; then
        expect_vgem=1
        stage_modules "$staging/etc/ionvm/vgem.list"
    else
        log "kernel $version has no vgem: the tests that need it will be skipped"
        : >"$staging/etc/ionvm/vgem.list"
    fi

    # For init and guest.sh.  IONVM_KEEP_PATHS: what the guest must still see
    # of the host under its own /tmp and /run (the build may live there).
    cat >"$staging/etc/ionvm/config" <<EOF
IONVM_GUEST_SCRIPT='$here/guest.sh'
IONVM_TEST_BINARY='$test_binary'
IONVM_RESULTS_DIR='$results'
IONVM_KEEP_PATHS='$here $src $build $out ${test_binary%/*}'
IONVM_GUEST_TIMEOUT='$guest_timeout'
ION_VM_MODULE_DIR='$out/modules'
ION_VM_EXPECT_VGEM='$expect_vgem'
EOF
    (cd "$staging" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
        gzip -1 >"$out/initramfs.cpio.gz"
}

boot() {
    log "booting $version under TCG (console: $out/console.log, limit $vm_timeout)"
    local status=0
    timeout -k 30 "$vm_timeout" qemu-system-x86_64 \
        -machine q35 -accel tcg -cpu max -smp 2 -m 1024 \
        -nodefaults -nographic -no-reboot -serial stdio \
        -kernel "$tree/boot/vmlinuz-$krel" -initrd "$out/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1" \
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$results,mount_tag=results,security_model=none" \
        </dev/null >"$out/console.log" 2>"$out/qemu.log" || status=$?
    case $status in
        0) ;;
        124 | 137) fail_run "the VM did not finish within $vm_timeout (hung?)" ;;
        *) fail_run "qemu exited with status $status: $(cat "$out/qemu.log")" ;;
    esac
}

# Explains a run that produced no complete result file, and exits 1.
fail_run() {
    {
        echo "vm.sh: ERROR: $1"
        # The lines that say what went wrong, if the kernel or init said it.
        grep -hE 'ionvm.*FATAL|Kernel panic|BUG:|Oops|WARNING:' "$out/console.log" 2>/dev/null | head -n 10 || true
        if [[ -s $results/results.txt ]]; then
            echo "--- last results ($results/results.txt):"
            tail -n 5 "$results/results.txt"
        fi
        if [[ -s $results/gtest.log ]]; then
            echo "--- end of $results/gtest.log:"
            tail -n 20 "$results/gtest.log"
        fi
        echo "--- end of $out/console.log:"
        tail -n 40 "$out/console.log" 2>/dev/null || echo "(no console output)"
    } >&2
    exit 1
}

collect() {
    local file=$results/results.txt last
    [[ -f $file ]] || fail_run "the guest wrote no results.txt"
    last=$(tail -n 1 "$file")
    [[ $last =~ ^END\ -?[0-9]+$ ]] || fail_run "results.txt does not end with END: the guest did not finish"
    log "done: $(grep -c '^PASS ' "$file") PASS, $(grep -c '^FAIL ' "$file") FAIL," \
        "$(grep -c '^SKIP ' "$file") SKIP; ion_vm_test exit status ${last#END }"
}

main() {
    parse_args "$@"
    # Old results must never be read as this run's.
    rm -rf "$results"
    mkdir -p "$results"
    check_tools
    prepare_kernel
    build_modules
    make_initramfs
    boot
    collect
}

main "$@"
