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
#              [--guest-script SCRIPT --guest-args 'ARGS']
# --guest-script runs in the guest instead of guest.sh, with the same
# environment and IONVM_GUEST_ARGS (bench/run-in-vm.sh uses it); it must
# end results.txt with "END <status>" as guest.sh does.
# env:   IONSVC_VM_CACHE (default /var/cache/ionsvc-vm)
#        IONSVC_VM_TIMEOUT (whole VM run, timeout(1) syntax; default 20m)
#        IONSVC_VM_GUEST_TIMEOUT (ion_vm_test in the guest, seconds; default 900)
#        IONSVC_VM_MEMORY (the guest's RAM in MiB; default 1024)
#        IONSVC_DEBIAN_MIRROR (the sid chroot's mirror; default http://deb.debian.org/debian)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IONSVC_VM_CACHE:-/var/cache/ionsvc-vm}
vm_timeout=${IONSVC_VM_TIMEOUT:-20m}
vm_memory=${IONSVC_VM_MEMORY:-1024}
guest_timeout=${IONSVC_VM_GUEST_TIMEOUT:-900}
arch=amd64
harness_name=vm.sh
test_name=ion_vm_test
# shellcheck source=kernel.sh
. "$here/kernel.sh"

parse_args() {
    series='' src='' build='' test_binary='' out='' guest_script=$here/guest.sh guest_args=''
    while (($#)); do
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
            --series) series=$2 ;;
            --source) src=$2 ;;
            --build) build=$2 ;;
            --test-binary) test_binary=$2 ;;
            --out) out=$2 ;;
            --guest-script) guest_script=$2 ;;
            --guest-args) guest_args=$2 ;;
            *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
        esac
        shift 2
    done
    set_series "$series"
    [[ -d $src && -d $build && -n $out ]] || die "--source and --build must be directories, --out given"
    [[ -x $test_binary ]] || die "test binary '$test_binary' does not exist (was ion_vm_test built?)"
    [[ -f $guest_script ]] || die "guest script '$guest_script' does not exist"
    # The guest's config quotes it in single quotes.
    [[ $guest_args != *[\'\"\\\$\`]* ]] || die "--guest-args must not contain quotes, backslashes, \$ or backquotes"
    mkdir -p "$out"
    src=$(realpath "$src") build=$(realpath "$build") out=$(realpath "$out")
    test_binary=$(realpath "$test_binary") guest_script=$(realpath "$guest_script")
    test_name=${test_binary##*/}
    results=$out/results
    local path
    # These paths go into QEMU options (commas split them) and into the
    # guest's single-quoted config.
    for path in "$here" "$src" "$build" "$out" "$test_binary" "$guest_script"; do
        if [[ $path =~ [[:space:],\'\"\\\$\`] ]]; then
            die "path '$path' contains a space, comma, quote, backslash, \$ or backquote; the VM harness cannot pass it on"
        fi
    done
}


check_tools() {
    require_tools qemu-system-x86_64 busybox cpio xz gzip make gcc apt-get apt-cache \
        dpkg-deb depmod modinfo flock timeout realpath
    find_static_busybox
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
IONVM_GUEST_SCRIPT='$guest_script'
IONVM_GUEST_ARGS='$guest_args'
IONVM_TEST_BINARY='$test_binary'
IONVM_RESULTS_DIR='$results'
IONVM_KEEP_PATHS='$here $src $build $out ${test_binary%/*} ${guest_script%/*}'
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
        -machine q35 -accel tcg -cpu max -smp 2 -m "$vm_memory" \
        -nodefaults -nographic -no-reboot -serial stdio \
        -kernel "$tree/boot/vmlinuz-$krel" -initrd "$out/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1" \
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$results,mount_tag=results,security_model=none" \
        </dev/null >"$out/console.log" 2>"$out/qemu.log" || status=$?
    qemu_ended "$status"
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
