#!/usr/bin/env bash
# Quick start, part 1: install what building needs, build the daemon,
# ionsvc-ctl and the demo (nothing else: a few minutes on 2 cores, in
# build-quickstart/), and run ionsvcd in the foreground on the memfd backend
# with its socket in ./run/. Ctrl-C stops it.
#
# Who may connect: the socket is 0660, root's and a group's:
#   IONSVC_SOCKET_GROUP=<group>  that group, if set;
#   under sudo                   the primary group of the user who ran sudo;
#   otherwise                    the daemon's own (root's: root only).
# Extra arguments go to ionsvcd (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --build
cmake --preset quickstart >/dev/null
cmake --build --preset quickstart

group=${IONSVC_SOCKET_GROUP:-}
if [[ -z $group && -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
    group=$(id -gn "$SUDO_USER")
fi
group_arguments=()
if [[ -n $group ]]; then
    group_arguments=(--socket-group "$group")
    who="root and the members of group '$group'"
else
    who="root only (IONSVC_SOCKET_GROUP=<group> or sudo from your own account lets others in)"
fi

socket="$PWD/run/ionsvc.sock"
# A client must be able to walk the path to the socket, and to the tools.
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && ! runuser -u "$SUDO_USER" -- test -x "$PWD"; then
    echo "run.sh: warning: $SUDO_USER cannot enter $PWD (a directory on the way is closed to it);" \
        "move the checkout somewhere it can, e.g. its home" >&2
fi

build=$PWD/build-quickstart
cat <<INFO

ionsvcd is starting on the memfd backend; its socket is
    $socket
and may be used by $who.
Point ionsvc-ctl and libbufclient clients at it, in another terminal:
    export IONSVC_SOCKET=$socket
    $build/ctl/ionsvc-ctl stats
    $build/examples/ionsvc-share-demo --size 4M --hold

INFO
exec "$build/daemon/ionsvcd" --backend memfd --socket "$socket" "${group_arguments[@]}" "$@"
