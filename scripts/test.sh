#!/usr/bin/env bash
# Quick start, part 2: install what is missing, build, and run the whole test
# suite through ctest: once in the release build (warnings as errors), then
# the request border's fuzzer for a minute (tests/fuzz/README.md), then once
# built with AddressSanitizer + UndefinedBehaviorSanitizer.
# Among the tests, install.* stage `cmake --install` in a DESTDIR and check
# the installed files, run systemd-analyze verify and security on the
# installed units, and fail on any warning; package.deb makes the Debian
# package that the systemd VM test installs (see docs/SYSTEMD.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# Under CI, tests that need root fail instead of skipping without it.
if [[ ${CI:-} == true ]]; then
    export IONSVC_REQUIRE_ROOT=1
fi
jobs=$(nproc)

for preset in default fuzz asan; do
    echo "=== $preset: configure, build, test"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" -j "$jobs"
    ctest --preset "$preset" -j "$jobs"
done
