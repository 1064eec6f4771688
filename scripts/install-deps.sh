#!/usr/bin/env bash
# Installs, with apt-get, whatever of ionsvc's build and test dependencies is missing.
# Idempotent: when everything is present it touches nothing and needs no network.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config
    libboost-dev
    libprotobuf-dev protobuf-compiler
    libspdlog-dev libfmt-dev
    libsystemd-dev
    libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
    libgtest-dev libgmock-dev
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
    debootstrap e2fsprogs
)

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
