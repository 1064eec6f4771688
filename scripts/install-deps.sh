#!/usr/bin/env bash
# Installs, with apt-get, whatever of ionsvc's build and test dependencies is missing.
# Idempotent: when everything is present it touches nothing and needs no network.
#   install-deps.sh          everything scripts/test.sh needs
#   install-deps.sh --build  only what building the daemon, ionsvc-ctl and the
#                            demo needs (scripts/run.sh)
set -euo pipefail

build_packages=(
    build-essential cmake ninja-build pkg-config
    libboost-dev
    libprotobuf-dev protobuf-compiler
    libspdlog-dev libfmt-dev
    libsystemd-dev
    libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
    # The Debian package (cpack): dpkg-shlibdeps finds its Depends, and
    # CPack tells programs and libraries apart with file(1).
    dpkg-dev file
)
test_packages=(
    libgtest-dev libgmock-dev
    # The metrics' test reads them with the Prometheus project's own parsers.
    python3-prometheus-client
    # ionsvc-ctl top's test runs it in a pseudo-terminal.
    tmux
    # The request border's fuzzer (tests/fuzz): clang with libFuzzer.
    clang libclang-rt-14-dev
    # The service files' tests (ctest -L install): systemd-analyze verify and
    # security, systemd-sysusers, systemctl --root, systemd-socket-activate.
    # Only the tools: nothing here boots or needs a running systemd.
    systemd
    # Kernel tests in QEMU (tests/vm): the VM and its initramfs, and what the
    # kernel headers' build tools need (the harness unpacks Debian's kernel
    # packages into a cache instead of installing them, so their
    # dependencies come from here).
    qemu-system-x86 busybox-static cpio gzip xz-utils kmod util-linux
    libelf1 libssl3 zlib1g pahole
    # The service under a booted systemd (tests/vm/harness/systemd-vm.sh):
    # a Debian image made with debootstrap, written to an ext4 disk image.
    # debootstrap also makes the sid chroot that fetches and builds the
    # kernels newer than Debian 12's (tests/vm/harness/kernel.sh).
    debootstrap e2fsprogs
)

case ${1:-} in
--build) packages=("${build_packages[@]}") ;;
"") packages=("${build_packages[@]}" "${test_packages[@]}") ;;
*)
    echo "usage: install-deps.sh [--build]" >&2
    exit 2
    ;;
esac

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
