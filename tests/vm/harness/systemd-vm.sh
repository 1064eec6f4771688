#!/usr/bin/env bash
# Tests ionsvc as installed and run by systemd, in QEMU:
#   kernel   - the newest Debian 12 kernel of the series and ion_simple.ko
#              built against it (kernel.sh, shared with vm.sh)
#   image    - a minimal Debian 12 made by debootstrap (systemd, udev and
#              the libraries ionsvc links), cached per package list
#   install  - the Debian package (cpack, tests/integration/package_test.sh)
#              copied into a copy of it, with the test binary, its users and
#              a unit that installs the package with dpkg once systemd runs
#              and then runs the tests
#   boot     - the kernel under TCG; the initramfs mounts the image and
#              starts its systemd; the test unit powers the VM off
#   collect  - the results come back on serial ports (files here) and must
#              end with END
# Anything that stops the tests from running is an error (exit 1).
#
# usage: systemd-vm.sh --series 6.12 --source SRC_DIR --package ionsvc_VERSION_ARCH.deb
#                      --test-binary ionsvc_systemd_test --out OUT_DIR
#                      --ctl INSTALLED_IONSVC_CTL --config INSTALLED_CONFIG
# env:   IONSVC_VM_CACHE (default /var/cache/ionsvc-vm)
#        IONSVC_VM_TIMEOUT (whole VM run, timeout(1) syntax; default 20m)
#        IONSVC_VM_GUEST_TIMEOUT (the tests in the guest, seconds; default 900)
#        IONSVC_DEBIAN_MIRROR (debootstrap's mirror; default http://deb.debian.org/debian)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IONSVC_VM_CACHE:-/var/cache/ionsvc-vm}
vm_timeout=${IONSVC_VM_TIMEOUT:-20m}
guest_timeout=${IONSVC_VM_GUEST_TIMEOUT:-900}
arch=amd64
suite=bookworm
harness_name=systemd-vm.sh
test_name=ionsvc_systemd_test
# shellcheck source=kernel.sh
. "$here/kernel.sh"

# What the image has besides debootstrap's minbase: systemd as init, udev
# for the device rule, procps for the unit's ExecReload=/bin/kill, passwd
# for the administrator's usermod.
base_packages=(systemd systemd-sysv udev dbus kmod procps passwd)

parse_args() {
    series='' src='' package='' test_binary='' out='' ctl='' config=''
    while (($#)); do
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
            --series) series=$2 ;;
            --source) src=$2 ;;
            --package) package=$2 ;;
            --test-binary) test_binary=$2 ;;
            --out) out=$2 ;;
            --ctl) ctl=$2 ;;
            --config) config=$2 ;;
            *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
        esac
        shift 2
    done
    set_series "$series"
    [[ -d $src && -n $out ]] || die "--source must be a directory, --out given"
    [[ -f $package ]] || die "package '$package' does not exist (package.deb makes it: ctest -R package.deb)"
    [[ -x $test_binary ]] || die "test binary '$test_binary' does not exist (was ionsvc_systemd_test built?)"
    [[ $ctl == /* && $config == /* ]] || die "--ctl and --config must be the absolute installed paths"
    mkdir -p "$out"
    src=$(realpath "$src") package=$(realpath "$package") out=$(realpath "$out")
    test_binary=$(realpath "$test_binary")
    results=$out/results
    image_files=$src/tests/vm/systemd/image
    local path
    # These paths go into QEMU options, where commas split them.
    for path in "$out" "$cache"; do
        [[ $path != *,* ]] || die "path '$path' contains a comma; QEMU cannot take it"
    done
}

check_tools() {
    require_tools qemu-system-x86_64 busybox cpio xz gzip make gcc apt-get apt-cache \
        dpkg-deb dpkg-query depmod modinfo flock timeout realpath debootstrap mkfs.ext4 \
        sha256sum dpkg
    find_static_busybox
}

# The package to put in the image for a name in Depends: the name itself,
# or, for a virtual one, the package installed here that provides it (as
# libspdlog1.10 provides libspdlog1.10-fmt9), which debootstrap cannot find.
real_package() {
    local name=$1 provider
    if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$name" 2>/dev/null) != ii* ]]; then
        provider=$(dpkg-query -W -f='${Package} ${Provides}\n' | awk -v name="$name" '
            { for (i = 2; i <= NF; i++) { provided = $i; sub(/,$/, "", provided)
                  if (provided == name) { print $1; exit } } }')
        name=${provider:-$name}
    fi
    echo "$name"
}

# Sets packages to what the image needs besides base_packages: ionsvc's
# Depends (the first of each alternative; dpkg -i in the guest then checks
# them all), and the Debian packages of the libraries the test binary loads
# that ionsvc's package does not bring (ldd on this Debian 12 host).
find_image_packages() {
    local names name libraries library owner
    packages=()
    mapfile -t names < <(dpkg-deb -f "$package" Depends | tr ',' '\n' |
        sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g')
    for name in "${names[@]}"; do
        [[ -z $name ]] || packages+=("$(real_package "$name")")
    done
    mapfile -t libraries < <(ldd "$test_binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
    for library in "${libraries[@]}"; do
        # libbufclient and libionsvc-wire come with the package.
        case $(basename "$library") in libbufclient.so* | libionsvc-wire.so*) continue ;; esac
        owner=$(dpkg -S "$library" 2>/dev/null || dpkg -S "$(realpath "$library")" 2>/dev/null ||
            dpkg -S "${library#/usr}" 2>/dev/null) || die "no Debian package owns $library"
        packages+=("${owner%%:*}")
    done
    ((${#packages[@]} > 0)) || die "the package $package has no Depends"
}

# Sets base to a debootstrapped image with $packages, made once per
# package list and kept in the cache (about 300 MB; older lists are removed).
prepare_image() {
    local key lock_fd dir
    key=$(printf '%s\n' "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-16)
    base=$cache/images/$suite-$key
    mkdir -p "$cache/images"
    exec {lock_fd}>>"$cache/lock"
    flock -w 1200 "$lock_fd" || die "waited 20 minutes for $cache/lock"
    if [[ ! -d $base ]]; then
        log "the image gets ${packages[*]}"
        debootstrap_into "$suite" "$base" --include="$(IFS=,; echo "${packages[*]}")"
        rm -rf "$base"/var/lib/apt/lists/*
        for dir in "$cache"/images/"$suite"-*; do
            [[ $dir == "$base" ]] || { log "removing $dir, replaced by $base"; rm -rf "$dir"; }
        done
    fi
    exec {lock_fd}>&-
    log "image $base"
}

# The image of this run: the cached one, the package to install once it
# has booted, and the tests with their users and unit.
make_disk() {
    local rootfs=$out/rootfs tests_dir=/usr/local/lib/ionsvc-tests unit
    log "making the disk with $(basename "$package")"
    rm -rf "$rootfs" "$out/disk.img"
    cp -a "$base" "$rootfs"

    install -D -m 644 "$package" "$rootfs$tests_dir/ionsvc.deb"
    install -D -m 755 "$test_binary" "$rootfs$tests_dir/ionsvc_systemd_test"
    install -D -m 755 "$image_files/run-tests" "$rootfs$tests_dir/run-tests"
    install -D -m 644 "$out/modules/ion_simple.ko" "$rootfs$tests_dir/ion_simple.ko"
    install -D -m 644 "$image_files/ionsvc-tests.sysusers" "$rootfs/etc/sysusers.d/ionsvc-tests.conf"
    unit=$rootfs/etc/systemd/system/ionsvc-systemd-test.service
    sed -e "s|@TEST_DIR@|$tests_dir|g" -e "s|@CTL@|$ctl|g" -e "s|@CONFIG@|$config|g" \
        -e "s|@GUEST_TIMEOUT@|$guest_timeout|g" -e "s|@PACKAGE@|$tests_dir/ionsvc.deb|g" "$image_files/ionsvc-systemd-test.service" >"$unit"
    mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
    ln -sf ../ionsvc-systemd-test.service "$rootfs/etc/systemd/system/multi-user.target.wants/"

    # Not a first boot (which would apply presets and enable ionsvc): the
    # tests start the units themselves.
    echo 0123456789abcdef0123456789abcdef >"$rootfs/etc/machine-id"
    echo ionsvc-vm >"$rootfs/etc/hostname"
    echo "/dev/vda / ext4 rw 0 1" >"$rootfs/etc/fstab"

    mkfs.ext4 -q -F -L ionsvc-root -d "$rootfs" "$out/disk.img" 2G >"$out/mkfs.log" 2>&1 ||
        die "mkfs.ext4 failed: $(cat "$out/mkfs.log")"
    rm -rf "$rootfs"
}

make_initramfs() {
    local staging=$out/initramfs
    log "making the initramfs"
    rm -rf "$staging"
    mkdir -p "$staging"/{bin,dev,proc,sys,newroot,etc/ionvm,lib/modules}
    cp "$busybox" "$staging/bin/busybox"
    cp "$image_files/init" "$staging/init"
    chmod 755 "$staging/init"
    if ((EUID == 0)); then mknod -m 600 "$staging/dev/console" c 5 1; fi
    # ext4 asks the crypto API for crc32c, which nothing loads in an initramfs.
    module_closure virtio_pci virtio_blk crc32c_generic ext4 ||
        die "kernel $version has no virtio_blk, crc32c or ext4"
    stage_modules "$staging/etc/ionvm/disk.list"
    (cd "$staging" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
        gzip -1 >"$out/initramfs.cpio.gz"
}

boot() {
    log "booting $version with systemd under TCG (console: $out/console.log, limit $vm_timeout)"
    local status=0 port
    for port in results gtest journal; do : >"$out/$port.tty"; done
    timeout -k 30 "$vm_timeout" qemu-system-x86_64 \
        -machine q35 -accel tcg -cpu max -smp 2 -m 1024 \
        -nodefaults -nographic -no-reboot -nic none \
        -kernel "$tree/boot/vmlinuz-$krel" -initrd "$out/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 systemd.show_status=1" \
        -drive "file=$out/disk.img,format=raw,if=virtio,cache=unsafe" \
        -serial "file:$out/console.log" -serial "file:$out/results.tty" \
        -serial "file:$out/gtest.tty" -serial "file:$out/journal.tty" \
        </dev/null >"$out/qemu.log" 2>&1 || status=$?
    # The guest's serial ports turned \n into \r\n.
    tr -d '\r' <"$out/results.tty" >"$results/results.txt"
    tr -d '\r' <"$out/gtest.tty" >"$results/gtest.log"
    tr -d '\r' <"$out/journal.tty" >"$results/journal.txt"
    rm -f "$out/disk.img"
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
    find_image_packages
    mapfile -t packages < <(printf '%s\n' "${base_packages[@]}" "${packages[@]}" | sort -u)
    prepare_image
    make_disk
    make_initramfs
    boot
    collect
}

main "$@"
