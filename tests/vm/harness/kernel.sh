#!/usr/bin/env bash
# What the QEMU harnesses share, sourced by vm.sh (the driver's and
# the daemon's tests, guest chrooted into the host) and systemd-vm.sh (the
# installed service under a booted systemd): finding, fetching and unpacking
# a Debian kernel series, building our modules against it, picking its
# modules for an initramfs, and judging whether the guest finished.
#
# The caller sets: here (this directory), cache, arch, series, out, src
# (source tree), results (where the guest's results.txt and gtest.log end
# up), harness_name (for its messages) and test_name (the in-VM test
# binary); these functions set suite, suite_root, image_name, version,
# version_re, tree, krel, kdir, moddir, closure.
# shellcheck shell=bash

mirror=${IONSVC_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '%s [%4ds] %s\n' "$harness_name" "$SECONDS" "$*"; }
die() {
    printf '%s [%4ds] ERROR: %s\n' "$harness_name" "$SECONDS" "$*" >&2
    exit 1
}

# Debian 12's series come from the host's apt: 6.1 -> 6.1.0-N,
# 6.12 -> 6.12.N+deb12.  Newer ones come from sid (7.2 -> 7.2.N+deb14),
# through the apt of a sid chroot in the cache: the host must not get sid's
# lists, and sid's headers need sid's gcc and libc, so the modules are built
# in that chroot too.  sid splits the image: vmlinuz in linux-binary-unsigned,
# the modules in linux-modules, modules.builtin and the like in linux-base.
set_series() {
    series=$1
    [[ $series =~ ^[0-9]+\.[0-9]+$ ]] || die "--series must look like 6.1, not '$series'"
    version_re="${series//./\\.}\.[0-9]+(-[0-9]+)?(\+deb[0-9]+)?"
    case $series in
        6.1 | 6.12) suite=bookworm suite_root='' image_name=(linux-image- "-$arch-unsigned") ;;
        *) suite=sid suite_root=$cache/chroots/sid image_name=(linux-binary-unsigned- "-$arch") ;;
    esac
}

# Runs apt or dpkg where the series' packages come from: here, or in the
# sid chroot.
in_suite() {
    if [[ -n $suite_root ]]; then
        chroot "$suite_root" "$@"
    else
        "$@"
    fi
}

# The packages with the kernel and its modules (all of one version $1).
image_packages() {
    case $suite in
        bookworm) echo "linux-image-$1-$arch-unsigned" ;;
        sid) echo "linux-binary-unsigned-$1-$arch linux-modules-$1-$arch linux-base-$1-$arch" ;;
    esac
}

# Debootstraps a minbase $1 into $2 (atomically: under another name until it
# is complete), with debootstrap's further options $3...; leaves no debs.
debootstrap_into() {
    local suite=$1 dir=$2 tmp=$2.tmp
    shift 2
    rm -rf "$tmp"
    log "debootstrap $suite from $mirror into $dir (log: $out/debootstrap.log)"
    debootstrap --variant=minbase "$@" "$suite" "$tmp" "$mirror" >"$out/debootstrap.log" 2>&1 ||
        die "debootstrap failed:
$(tail -n 20 "$out/debootstrap.log")"
    rm -rf "$tmp"/var/cache/apt/archives/*.deb
    mv "$tmp" "$dir"
}

# Makes the sid chroot the first time (about 0.6 GB once the headers are in).
prepare_suite_root() {
    [[ -n $suite_root ]] || return 0
    require_tools debootstrap chroot unshare env
    ((EUID == 0)) || die "kernel series $series comes from a sid chroot, which only root can make and use"
    if [[ ! -d $suite_root ]]; then
        mkdir -p "${suite_root%/*}"
        debootstrap_into "$suite" "$suite_root"
    fi
    # A mirror may be a snapshot whose sid Release has expired long ago.
    echo 'Acquire::Check-Valid-Until "false";' >"$suite_root/etc/apt/apt.conf.d/90ionsvc"
}

# Dies naming every tool of "$@" that is missing.
require_tools() {
    local tool missing=()
    for tool in "$@"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}; run scripts/install-deps.sh"
}

# busybox-static's binary, the only one that works in an initramfs without libc.
find_static_busybox() {
    busybox=$(command -v busybox)
    if ldd "$busybox" >/dev/null 2>&1; then
        die "$busybox is dynamically linked; install busybox-static"
    fi
}

# Prints the newest version of the series for which apt knows both the
# unsigned image and the headers.
newest_version() {
    local headers v
    headers=$(in_suite apt-cache pkgnames "linux-headers-$series.")
    for v in $(in_suite apt-cache pkgnames "${image_name[0]}$series." |
        sed -nE "s/^${image_name[0]}(${version_re})${image_name[1]}\$/\1/p" | sort -rV); do
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
        in_suite apt-get update -qq || die "apt-get update failed"
        version=$(newest_version) || die "no ${image_name[0]}$series.*${image_name[1]} with matching linux-headers in $suite's lists"
    fi
    tree=$cache/trees/$version
    krel=$version-$arch # uname -r
    log "kernel $krel"
}

# Downloads the image packages into $cache/debs/$version, with, for the
# host's series, the headers and their common and kbuild packages (sid's are
# installed in its chroot instead: install_headers).  Returns 1 (instead of
# exiting) when apt cannot get them, so that the caller can refresh stale
# lists and try again.
fetch() {
    local debs=$cache/debs/$version headers=linux-headers-$version-$arch packages deps apt_tmp tmp
    [[ -d $debs ]] && return 0
    packages=$(image_packages "$version")
    if [[ -z $suite_root ]]; then
        deps=$(apt-cache depends "$headers" | sed -nE 's/^ *\|?Depends: (linux-(headers-[^ ]*-common|kbuild-[^ ]*))$/\1/p') || return 1
        [[ $(wc -l <<<"$deps") == 2 ]] || { log "cannot tell the common and kbuild packages of $headers: '$deps'"; return 1; }
        packages+=" $headers ${deps//$'\n'/ }"
        apt_tmp=$cache/debs/.tmp-$version
    else
        # Where the chroot's apt can write; the same file system as the cache.
        apt_tmp=/var/tmp/ionsvc-debs-$version
    fi
    tmp=$suite_root$apt_tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "downloading $packages"
    # shellcheck disable=SC2086 # $packages is a list of package names
    in_suite env -C "$apt_tmp" apt-get download -qq -o APT::Sandbox::User=root $packages || return 1
    mv "$tmp" "$debs"
}

# Installs sid's headers of $version in its chroot, with make (gcc comes
# with them), removing those of other versions.
install_headers() {
    local headers=linux-headers-$version-$arch old
    [[ -n $suite_root ]] || return 0
    [[ $(in_suite dpkg-query -W -f='${db:Status-Abbrev}\n' "$headers" make 2>/dev/null | grep -c '^ii') == 2 ]] &&
        return 0
    old=$(in_suite dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'linux-headers-*' 'linux-kbuild-*' 2>/dev/null |
        awk -v version="$version" '$1 ~ /^ii/ && !index($2, version) { printf "%s- ", $2 }') || true
    log "installing $headers in $suite_root (log: $out/apt.log)"
    # shellcheck disable=SC2086 # $old is a list of packages to remove
    in_suite env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "$headers" make $old >"$out/apt.log" 2>&1 ||
        die "could not install $headers in $suite_root: $(tail -n 20 "$out/apt.log")"
    in_suite apt-get clean
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
    if [[ -z $suite_root ]]; then
        # The arch headers include the common ones by their installed path;
        # point that at where the tree will be after the rename below.
        makefile=$tmp/usr/src/linux-headers-$version-$arch/Makefile
        sed -i "s|^include /usr/src/|include $tree/usr/src/|" "$makefile"
        grep -q "^include $tree/usr/src/linux-headers-$version-common/Makefile\$" "$makefile" ||
            die "unexpected $makefile: $(cat "$makefile")"
    else
        # sid's packages put everything, vmlinuz too, in /usr/lib/modules;
        # the tree gets Debian 12's layout, which depmod -b and the harnesses expect.
        ln -s usr/lib "$tmp/lib"
        mkdir -p "$tmp/boot"
        ln -s "../lib/modules/$krel/vmlinuz.unsigned" "$tmp/boot/vmlinuz-$krel"
    fi
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
    prepare_suite_root
    resolve
    if [[ ! -d $tree ]] && ! fetch; then
        # Security updates replace kernels: the lists may name one the
        # archive no longer has.
        log "download failed; refreshing apt's lists and trying again"
        in_suite apt-get update -qq || die "apt-get update failed"
        resolve
        [[ -d $tree ]] || fetch || die "could not download the packages of kernel $version"
    fi
    extract
    install_headers
    exec {lock_fd}>&-
    # As make sees it: sid's in its chroot.
    if [[ -n $suite_root ]]; then
        kdir=/usr/src/linux-headers-$version-$arch
    else
        kdir=$tree/usr/src/linux-headers-$version-$arch
    fi
    moddir=$tree/lib/modules/$krel
}

# Runs a command where the modules are built: here, or in the sid chroot
# with $out at the same path and /proc (objtool reads it) mounted, in a
# mount namespace of its own, so that both mounts go when it ends, however
# it ends.
in_build_root() {
    if [[ -z $suite_root ]]; then
        "$@"
        return
    fi
    mkdir -p "$suite_root$out"
    unshare --mount --propagation private -- bash -c '
        root=$1 out=$2
        shift 2
        mount -t proc proc "$root/proc" && mount --bind "$out" "$root$out" && exec chroot "$root" "$@"
    ' in_build_root "$suite_root" "$out" "$@"
}

# Builds one module directory (a copy: the source tree stays clean and the
# series do not share objects), with the extra warnings of W=1.
build_one() {
    local dir=$1
    shift
    in_build_root make -C "$kdir" M="$dir" W=1 KCFLAGS=-Werror -j"$(nproc)" "$@" modules >>"$out/build.log" 2>&1 ||
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


# Explains a run that produced no complete result file, and exits 1.
fail_run() {
    {
        echo "$harness_name: ERROR: $1"
        # The lines that say what went wrong, if the kernel, init or systemd said it.
        grep -hE 'ionvm.*FATAL|Kernel panic|BUG:|Oops|WARNING:|Failed to start|emergency mode' \
            "$out/console.log" 2>/dev/null | head -n 10 || true
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

# Fails the run unless QEMU (under timeout(1) with $vm_timeout) ended with
# status $1 = 0, the guest having powered off.
qemu_ended() {
    case $1 in
        0) ;;
        124 | 137) fail_run "the VM did not finish within $vm_timeout (hung?)" ;;
        *) fail_run "qemu exited with status $1: $(cat "$out/qemu.log")" ;;
    esac
}

# The run counts only if the guest finished its results with END.
collect() {
    local file=$results/results.txt last
    [[ -s $file ]] || fail_run "the guest wrote no results (did $test_name run?)"
    last=$(tail -n 1 "$file")
    [[ $last =~ ^END\ -?[0-9]+$ ]] || fail_run "the results do not end with END: the guest did not finish"
    log "done: $(grep -c '^PASS ' "$file") PASS, $(grep -c '^FAIL ' "$file") FAIL," \
        "$(grep -c '^SKIP ' "$file") SKIP; $test_name exit status ${last#END }"
}
