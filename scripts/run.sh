#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build, and run ionsvcd in the
# foreground on the memfd backend, with its socket in ./run/. Ctrl-C stops it.
# Extra arguments go to ionsvcd (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default

socket="$PWD/run/ionsvc.sock"
cat <<INFO

ionsvcd is starting on the memfd backend; its socket is
    $socket
Point ionsvc-ctl and libbufclient clients at it, in another terminal:
    export IONSVC_SOCKET=$socket
    $PWD/build/ctl/ionsvc-ctl stats
    $PWD/build/examples/ionsvc-share-demo --size 4M --hold

INFO
exec build/daemon/ionsvcd --backend memfd --socket "$socket" "$@"
