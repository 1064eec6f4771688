#!/usr/bin/env bash
# The Debian package (packaging/), made with cpack from this build and
# checked without installing it (the systemd VM test installs it on a
# booted Debian, tests/vm/systemd):
#   - cpack makes ionsvc_<version>-1_<arch>.deb and its -dbgsym .ddeb, and
#     warns about nothing;
#   - the package holds exactly what `cmake --install` stages, its man pages
#     compressed, its programs and libraries stripped, their debug info in
#     the .ddeb under their build ids;
#   - its control fields: Depends from dpkg-shlibdeps plus systemd and udev,
#     the config a conffile, shlibs for libbufclient and libionsvc-wire, the
#     ldconfig trigger, and maintainer scripts that are valid POSIX sh.
#
# usage: package_test.sh cmake=... cpack=... build_dir=... version=... sysconfdir=...
# The package stays in <build_dir>/packages for the systemd VM test.
# shellcheck disable=SC2154
set -euo pipefail

for argument in "$@"; do
    key=${argument%%=*}
    case $key in
        cmake | cpack | build_dir | version | sysconfdir) printf -v "$key" '%s' "${argument#*=}" ;;
        *) echo "package_test: unknown argument '$argument'" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/ionsvc-package-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
packages=$build_dir/packages

fail() {
    echo "package_test: FAIL: $*" >&2
    exit 1
}

pass() {
    echo "ok: $*"
}

make_package() {
    local arch
    arch=$(dpkg --print-architecture)
    deb=$packages/ionsvc_$version-1_$arch.deb
    ddeb=$packages/ionsvc-dbgsym_$version-1_$arch.ddeb
    rm -f "$deb" "$ddeb"
    (cd "$build_dir" && "$cpack" --config CPackConfig.cmake) >"$work/cpack.log" 2>&1 || {
        cat "$work/cpack.log" >&2
        fail "cpack failed"
    }
    ! grep -i "warning" "$work/cpack.log" || fail "cpack warned (above)"
    [[ -f $deb && -f $ddeb ]] || fail "cpack made no $deb and $ddeb:"$'\n'"$(cat "$work/cpack.log")"
    pass "cpack made $(basename "$deb") and $(basename "$ddeb") without a warning"
}

check_contents() {
    local stage=$work/stage unpacked=$work/unpacked difference
    DESTDIR=$stage "$cmake" --install "$build_dir" >"$work/install.log" 2>&1 || {
        cat "$work/install.log" >&2
        fail "cmake --install into $stage failed"
    }
    dpkg-deb -x "$deb" "$unpacked"
    # The same files, each man page as <page>.gz.
    difference=$(diff <(cd "$stage" && find . ! -type d | sed -e 's|^\.||' -e 's|^\(/usr/share/man/.*\)|\1.gz|' | sort) \
                      <(cd "$unpacked" && find . ! -type d | sed 's|^\.||' | sort)) ||
        fail "the package's files differ from what cmake --install stages ('<' missing, '>' unexpected):"$'\n'"$difference"
    local page
    for page in "$unpacked"/usr/share/man/man*/*.gz; do
        gzip -t "$page" || fail "$page is not gzip"
    done
    pass "the package holds what cmake --install stages, man pages compressed"

    local elf build_id debug_file count=0
    dpkg-deb -x "$ddeb" "$work/dbgsym"
    while read -r elf; do
        file -b "$elf" | grep -q ', stripped' || fail "${elf#"$unpacked"} is not stripped"
        build_id=$(readelf -n "$elf" | awk '/Build ID:/ { print $3 }')
        [[ -n $build_id ]] || fail "${elf#"$unpacked"} has no build id"
        debug_file=$work/dbgsym/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug
        [[ -f $debug_file ]] || fail "the .ddeb has no debug info for ${elf#"$unpacked"} (build id $build_id)"
        count=$((count + 1))
    done < <(find "$unpacked" -type f -exec sh -c 'head -c 4 "$1" | grep -q ELF' _ {} \; -print)
    ((count == 5)) || fail "expected 5 ELF files (ionsvcd, ionsvc-ctl and three libraries), found $count"
    pass "its $count programs and libraries are stripped, with their debug info in the .ddeb"
}

check_control() {
    local name version_field depends package
    name=$(dpkg-deb -f "$deb" Package) version_field=$(dpkg-deb -f "$deb" Version)
    [[ $name == ionsvc && $version_field == "$version-1" ]] ||
        fail "Package and Version are '$name' and '$version_field'"
    depends=$(dpkg-deb -f "$deb" Depends)
    # What the maintainer scripts run, and the libraries the programs load.
    for package in systemd udev libc6 libstdc++6 libsystemd0 libprotobuf32 libtomlplusplus3 libfmt9; do
        [[ ", $depends," == *", $package "* || ", $depends," == *", $package,"* ]] || fail "Depends lacks $package: $depends"
    done
    pass "Depends: $depends"

    local control=$work/control
    dpkg-deb -e "$deb" "$control"
    [[ $(cat "$control/conffiles") == "$sysconfdir/ionsvc/ionsvc.conf" ]] ||
        fail "conffiles is not $sysconfdir/ionsvc/ionsvc.conf: $(cat "$control/conffiles")"
    grep -qx "activate-noawait ldconfig" "$control/triggers" || fail "no ldconfig trigger"
    grep -qx "libbufclient ${version%%.*} ionsvc (>= $version)" "$control/shlibs" ||
        fail "shlibs does not provide libbufclient: $(cat "$control/shlibs")"
    local script step
    for script in postinst prerm postrm; do
        [[ -x $control/$script ]] || fail "$script is missing or not executable"
        dash -n "$control/$script" || fail "$script is not valid sh"
    done
    # The steps an administrator would take after `cmake --install`
    # (docs/SYSTEMD.md), done by postinst.
    for step in "systemd-sysusers ionsvc.conf" "udevadm control --reload-rules" \
        "deb-systemd-helper enable ionsvc.socket" "deb-systemd-invoke start ionsvc.socket"; do
        grep -qF "$step" "$control/postinst" || fail "postinst does not run '$step'"
    done
    pass "the config is a conffile; shlibs, the ldconfig trigger and the maintainer scripts are in place"
}

for tool in dpkg dpkg-deb dpkg-shlibdeps file readelf dash gzip; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh (dpkg-dev, file, binutils)"
done
make_package
check_contents
check_control
