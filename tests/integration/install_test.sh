#!/usr/bin/env bash
# What `cmake --install` ships, checked in a staging directory (DESTDIR):
#
#   install_test.sh layout KEY=VALUE...      every file in place with the right
#       content and nothing else; a reinstall keeps the administrator's config;
#       --prefix other than the configured one is refused; the installed
#       daemon, ionsvc-ctl, a C++ client built with find_package(bufclient)
#       and a C11 client built with pkg-config work together, with the
#       socket passed as systemd passes it
#   install_test.sh units KEY=VALUE...       the installed units pass
#       systemd-analyze verify, enabling the service enables its socket too,
#       the service's exposure stays at most max_exposure, and the users and groups the units and the udev rule
#       name are the ones the sysusers.d file creates
#   install_test.sh prefix-usr KEY=VALUE...  configured for the prefix /usr,
#       the service files go under /usr/lib, the config under /etc, and the
#       unit names /usr/sbin/ionsvcd and /etc/ionsvc/ionsvc.conf
#
# ctest runs it (tests/integration/CMakeLists.txt) with the paths the build
# was configured with. A failure says what is wrong and exits 1.

# The paths come in as KEY=VALUE arguments, set with printf -v below.
# shellcheck disable=SC2154
set -euo pipefail

mode=${1:?usage: install_test.sh layout|units|prefix-usr KEY=VALUE...}
shift
known_keys=" cmake build_dir source_dir version prefix sbindir bindir libdir includedir sysconfdir
    docdir mandir unitdir sysusersdir udevrulesdir build_type cc cxx cxxflags max_exposure "
for argument in "$@"; do
    key=${argument%%=*}
    if [[ $argument != *=* || $known_keys != *[[:space:]]"$key"[[:space:]]* ]]; then
        echo "install_test: unknown argument '$argument'" >&2
        exit 2
    fi
    printf -v "$key" '%s' "${argument#*=}"
done

work=$(mktemp -d /tmp/ionsvc-install-test-XXXXXX)
stage=$work/stage
activator_pid=
cleanup() {
    if [[ -n $activator_pid ]]; then
        kill "$activator_pid" 2>/dev/null || true
        wait "$activator_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "install_test $mode: FAIL: $*" >&2
    exit 1
}

pass() {
    echo "ok: $*"
}

# Tools from Debian's package systemd (scripts/install-deps.sh installs it).
require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh (package systemd)"
    done
}

# DESTDIR=$1 cmake --install; the output is in $work/install.log.
install_into() {
    if ! DESTDIR=$1 "$cmake" --install "$build_dir" >"$work/install.log" 2>&1; then
        cat "$work/install.log" >&2
        fail "cmake --install into $1 failed"
    fi
}

# A unit as it must be installed: its source with the paths filled in.
expected_unit() {
    sed -e "s|@CMAKE_INSTALL_FULL_SBINDIR@|$sbindir|g" -e "s|@CMAKE_INSTALL_FULL_BINDIR@|$bindir|g" \
        -e "s|@IONSVC_METRICS_DIR@|/var/lib/prometheus/node-exporter|g" \
        -e "s|@IONSVC_CONFIG_FILE@|$sysconfdir/ionsvc/ionsvc.conf|g" \
        -e "s|@CMAKE_INSTALL_FULL_DOCDIR@|$docdir|g" "$1"
}

check_layout() {
    install_into "$stage"

    # Every file, and nothing else (no test binaries, no static libraries).
    local expected=(
        "$sbindir/ionsvcd"
        "$bindir/ionsvc-ctl" "$bindir/ionsvc-run" "$libdir/libionsvc-compat.so"
        "$libdir/libbufclient.so" "$libdir/libbufclient.so.${version%%.*}" "$libdir/libbufclient.so.$version"
        "$libdir/libionsvc-wire.so" "$libdir/libionsvc-wire.so.${version%%.*}" "$libdir/libionsvc-wire.so.$version"
        "$includedir/bufclient/bufclient.h" "$includedir/bufclient/bufclient_c.h"
        "$libdir/pkgconfig/bufclient.pc"
        "$libdir/cmake/bufclient/bufclientConfig.cmake" "$libdir/cmake/bufclient/bufclientConfigVersion.cmake"
        "$libdir/cmake/bufclient/bufclientTargets.cmake"
        "$libdir/cmake/bufclient/bufclientTargets-${build_type,,}.cmake"
        "$includedir/ionsvc/expected.h" "$includedir/ionsvc/status.h" "$includedir/ionsvc/unique_fd.h"
        "$unitdir/ionsvc.service" "$unitdir/ionsvc.socket"
        "$unitdir/ionsvc-metrics.service" "$unitdir/ionsvc-metrics.timer"
        "$sysusersdir/ionsvc.conf"
        "$udevrulesdir/60-ionsvc.rules"
        "$sysconfdir/ionsvc/ionsvc.conf"
        "$docdir/SYSTEMD.md" "$docdir/RECOVERY.md"
        "$mandir/man8/ionsvcd.8" "$mandir/man1/ionsvc-ctl.1" "$mandir/man5/ionsvc.conf.5"
    )
    local difference
    difference=$(diff <(printf '%s\n' "${expected[@]}" | sort) \
                      <(cd "$stage" && find . ! -type d | sed 's|^\.||' | sort)) ||
        fail "the installed files differ from the expected ones ('<' missing, '>' unexpected):"$'\n'"$difference"
    local program
    for program in "$sbindir/ionsvcd" "$bindir/ionsvc-ctl" "$bindir/ionsvc-run"; do
        [[ -x $stage$program ]] || fail "$program is not executable"
    done
    grep -q "^LD_PRELOAD=.*:}$libdir/libionsvc-compat.so\"$" "$stage$bindir/ionsvc-run" ||
        fail "the installed ionsvc-run does not preload $libdir/libionsvc-compat.so"
    pass "every file is in place under $prefix and $sysconfdir, and nothing else"

    local source installed
    while read -r source installed; do
        cmp -s "$source_dir/$source" "$stage$installed" ||
            fail "$installed is not a copy of $source"
    done <<EOF
systemd/ionsvc.sysusers $sysusersdir/ionsvc.conf
udev/60-ionsvc.rules $udevrulesdir/60-ionsvc.rules
config/ionsvc.conf $sysconfdir/ionsvc/ionsvc.conf
docs/SYSTEMD.md $docdir/SYSTEMD.md
docs/RECOVERY.md $docdir/RECOVERY.md
EOF
    local unit
    for unit in ionsvc.service ionsvc.socket ionsvc-metrics.service ionsvc-metrics.timer; do
        difference=$(diff <(expected_unit "$source_dir/systemd/$unit.in") "$stage$unitdir/$unit") ||
            fail "$unitdir/$unit is not its source with the installed paths:"$'\n'"$difference"
    done
    grep -qx "ExecStart=$sbindir/ionsvcd --config $sysconfdir/ionsvc/ionsvc.conf --fd-store-max 4096" "$stage$unitdir/ionsvc.service" &&
        grep -qx "FileDescriptorStoreMax=4096" "$stage$unitdir/ionsvc.service" ||
        fail "ExecStart= does not start the installed daemon on the installed config with the fd store of FileDescriptorStoreMax="
    pass "the installed files have the right content; ExecStart=$sbindir/ionsvcd"

    local config=$stage$sysconfdir/ionsvc/ionsvc.conf
    echo "# edited by the administrator" >>"$config"
    install_into "$stage"
    grep -q "^# edited by the administrator$" "$config" || fail "a reinstall overwrote the edited $config"
    grep -q "Keeping: $config" "$work/install.log" || fail "a reinstall did not say that it kept $config"
    pass "a reinstall keeps an edited config"

    if DESTDIR=$work/elsewhere "$cmake" --install "$build_dir" --prefix "$work/other-prefix" \
        >"$work/wrong-prefix.log" 2>&1; then
        fail "cmake --install --prefix with a prefix other than the configured $prefix succeeded"
    fi
    # CMake wraps the message: compare it as one line.
    tr -s ' \n' ' ' <"$work/wrong-prefix.log" | grep -q "reconfigure with -DCMAKE_INSTALL_PREFIX=$work/other-prefix instead" ||
        fail "the refused --prefix install does not say what to do instead:"$'\n'"$(cat "$work/wrong-prefix.log")"
    [[ ! -e $work/elsewhere ]] || fail "the refused --prefix install copied files before it stopped"
    pass "cmake --install --prefix with another prefix is refused before anything is copied"

    check_man_pages
    check_installed_programs_work_together
}

# Each man page renders without a warning, carries the version, and names
# every long option its program's --help lists; ionsvc-ctl --version and
# ionsvcd --version say the version.
check_man_pages() {
    local page warnings
    for page in man8/ionsvcd.8 man1/ionsvc-ctl.1 man5/ionsvc.conf.5; do
        warnings=$(groff -man -ww -z -t "$stage$mandir/$page" 2>&1) ||
            fail "groff failed on $page: $warnings"
        [[ -z $warnings ]] || fail "$page renders with warnings:"$'\n'"$warnings"
        grep -q "\"ionsvc $version\"" "$stage$mandir/$page" || fail "$page does not carry version $version"
    done
    export LD_LIBRARY_PATH=$stage$libdir
    local program option
    for program in "$sbindir/ionsvcd:man8/ionsvcd.8" "$bindir/ionsvc-ctl:man1/ionsvc-ctl.1"; do
        page=${program#*:}
        program=$stage${program%%:*}
        # The program's options and, for ionsvc-ctl, its subcommands'.
        local helps
        helps=$("$program" --help)
        if [[ $program == */ionsvc-ctl ]]; then
            local subcommand
            for subcommand in stats heaps buffers top dmabufs; do
                helps+=$("$program" "$subcommand" --help)
            done
        fi
        for option in $(grep -o -- '--[a-z-]*' <<<"$helps" | sort -u); do
            [[ $option == --help ]] && continue
            grep -qF -- "${option//-/\\-}" "$stage$mandir/$page" ||
                fail "$page does not document $option, which ${program##*/} --help lists"
        done
        [[ $("$program" --version) == *"$version"* ]] || fail "${program##*/} --version does not say $version"
    done
    pass "the man pages render without warnings and document every option; --version says $version"
}

# Programs outside the tree build against what was installed alone: a C++
# one through find_package(bufclient CONFIG), a C11 one through pkg-config.
build_installed_clients() {
    local consumer=$work/consumer
    if ! "$cmake" -S "$source_dir/tests/integration/consumer" -B "$consumer" -DCMAKE_BUILD_TYPE="$build_type" \
        -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$cxxflags" -DCMAKE_PREFIX_PATH="$stage$prefix" \
        -DINSTALLED_CLIENT_SOURCE="$source_dir/tests/integration/installed_client.cpp" >"$work/consumer.log" 2>&1 ||
        ! "$cmake" --build "$consumer" >>"$work/consumer.log" 2>&1; then
        cat "$work/consumer.log" >&2
        fail "a C++ client does not build with find_package(bufclient CONFIG) and bufclient::bufclient"
    fi
    pass "a C++ client builds with the installed CMake package (find_package(bufclient CONFIG))"

    local flags
    flags=$(PKG_CONFIG_LIBDIR=$stage$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage \
        pkg-config --cflags --libs "bufclient = $version") || fail "pkg-config does not find bufclient $version"
    # shellcheck disable=SC2086 # flags and cxxflags are lists of flags
    if ! "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror $cxxflags "$source_dir/tests/integration/c_client.c" \
        $flags -Wl,-rpath-link,"$stage$libdir" -o "$work/c_client" 2>"$work/compile.log"; then
        cat "$work/compile.log" >&2
        fail "a C11 client does not build with pkg-config --cflags --libs bufclient"
    fi
    pass "a C11 client builds with pkg-config's flags for bufclient ($flags)"
}

# The installed daemon, started the way systemd starts it (socket passed,
# installed config), serves the clients built from the installed headers
# and library alone, and the installed ionsvc-ctl sees it.
check_installed_programs_work_together() {
    # Where the dynamic linker would find them once installed.
    export LD_LIBRARY_PATH=$stage$libdir
    build_installed_clients
    local client=$work/consumer/installed_client

    local socket=$work/run/ionsvc.sock
    mkdir "$work/run"
    mkfifo "$work/activator.out"
    systemd-socket-activate --seqpacket --listen="$socket" --setenv=LD_LIBRARY_PATH \
        "$stage$sbindir/ionsvcd" --backend memfd --config "$stage$sysconfdir/ionsvc/ionsvc.conf" \
        >"$work/activator.out" 2>&1 &
    activator_pid=$!
    local activator_output line=
    exec {activator_output}<"$work/activator.out"
    # It says so once the socket is bound; the daemon starts at the first connection.
    while IFS= read -r -t 60 line <&"$activator_output"; do
        echo "$line" >>"$work/daemon.log"
        [[ $line == "Listening on "* ]] && break
    done
    [[ $line == "Listening on "* ]] ||
        fail "systemd-socket-activate did not listen on $socket:"$'\n'"$(cat "$work/daemon.log")"

    local result
    result=$("$client" "$socket" 2>&1) ||
        fail "the installed daemon did not serve the installed client: $result"$'\n'"$(cat "$work/daemon.log")"
    [[ $result == *"from heap 'memfd'"* ]] || fail "unexpected client output: $result"
    result=$("$work/c_client" "$socket" tour 2>&1) ||
        fail "the installed daemon did not serve the C11 client: $result"$'\n'"$(cat "$work/daemon.log")"
    [[ $result == *"freed everything"* ]] || fail "unexpected C11 client output: $result"
    result=$("$stage$bindir/ionsvc-ctl" --socket "$socket" heaps 2>&1) ||
        fail "the installed ionsvc-ctl failed: $result"
    [[ $result == *memfd* ]] || fail "the installed ionsvc-ctl does not list the memfd heap: $result"

    kill -TERM "$activator_pid"
    local status=0
    wait "$activator_pid" || status=$?
    activator_pid=
    cat <&"$activator_output" >>"$work/daemon.log"
    ((status == 0)) || fail "the installed daemon exited with $status on SIGTERM:"$'\n'"$(cat "$work/daemon.log")"
    grep -q "listening on the socket systemd passed" "$work/daemon.log" ||
        fail "the daemon did not take the passed socket:"$'\n'"$(cat "$work/daemon.log")"
    [[ -S $socket ]] || fail "the daemon removed the socket file that its activator owns"
    pass "the installed daemon, socket-activated on the installed config, served the installed C++ and C clients and ionsvc-ctl"
}

check_units() {
    install_into "$stage"

    # verify needs ExecStart's program to exist: check the units as installed,
    # but with the daemon's path inside the stage.
    local units=$work/units
    mkdir "$units"
    sed "s|^ExecStart=$sbindir/ionsvcd |ExecStart=$stage$sbindir/ionsvcd |" \
        "$stage$unitdir/ionsvc.service" >"$units/ionsvc.service"
    grep -q "^ExecStart=$stage$sbindir/ionsvcd " "$units/ionsvc.service" ||
        fail "the installed ionsvc.service has no ExecStart=$sbindir/ionsvcd"
    cp "$stage$unitdir/ionsvc.socket" "$units/"
    sed "s|^ExecStart=$bindir/ionsvc-ctl |ExecStart=$stage$bindir/ionsvc-ctl |" \
        "$stage$unitdir/ionsvc-metrics.service" >"$units/ionsvc-metrics.service"
    cp "$stage$unitdir/ionsvc-metrics.timer" "$units/"
    local output
    # It warns about unknown or misspelt settings and still exits 0: any output fails.
    if ! output=$(systemd-analyze verify "$units/ionsvc.socket" "$units/ionsvc.service" \
        "$units/ionsvc-metrics.timer" "$units/ionsvc-metrics.service" 2>&1) || [[ -n $output ]]; then
        fail "systemd-analyze verify:"$'\n'"$output"
    fi
    pass "systemd-analyze verify passes on ionsvc.socket, ionsvc.service and the metrics timer and service"

    # [Install]: enabling the service enables it at boot and its socket with it.
    systemctl --root="$stage" enable ionsvc.service >"$work/enable.log" 2>&1 ||
        fail "systemctl enable ionsvc.service failed:"$'\n'"$(cat "$work/enable.log")"
    local wanted
    for wanted in multi-user.target.wants/ionsvc.service sockets.target.wants/ionsvc.socket; do
        [[ $(readlink "$stage/etc/systemd/system/$wanted") == "$unitdir/${wanted#*/}" ]] ||
            fail "systemctl enable ionsvc.service did not link $wanted to $unitdir:"$'\n'"$(cat "$work/enable.log")"
    done
    pass "systemctl enable ionsvc.service enables it and ionsvc.socket"

    output=$(systemd-analyze security --offline=true --no-pager "$units/ionsvc.service" 2>&1) ||
        fail "systemd-analyze security failed:"$'\n'"$output"
    local exposure
    exposure=$(sed -n 's/.*Overall exposure level for ionsvc\.service: \([0-9.]*\) .*/\1/p' <<<"$output")
    [[ -n $exposure ]] || fail "no exposure level in systemd-analyze security's output:"$'\n'"$output"
    awk -v exposure="$exposure" -v most="$max_exposure" 'BEGIN { exit !(exposure <= most) }' ||
        fail "ionsvc.service's exposure is $exposure, above $max_exposure; its open settings:"$'\n'"$(grep '✗' <<<"$output")"
    pass "ionsvc.service's exposure is $exposure (at most $max_exposure)"

    # systemd-sysusers creates the users in an empty root, as on first boot.
    local root=$work/root
    mkdir -p "$root/etc"
    systemd-sysusers --root="$root" "$stage$sysusersdir/ionsvc.conf" >"$work/sysusers.log" 2>&1 ||
        fail "systemd-sysusers failed on the installed file:"$'\n'"$(cat "$work/sysusers.log")"
    local user_entry group_gid
    user_entry=$(grep '^ionsvc:' "$root/etc/passwd") || fail "sysusers created no user ionsvc"
    group_gid=$(awk -F: '$1 == "ionsvc" { print $3 }' "$root/etc/group")
    [[ -n $group_gid && $(cut -d: -f4 <<<"$user_entry") == "$group_gid" ]] ||
        fail "the user ionsvc's primary group is not ionsvc: $user_entry"
    [[ $(cut -d: -f7 <<<"$user_entry") == */nologin ]] || fail "the user ionsvc can log in: $user_entry"
    # Nobody but the daemon in its device group; clients are added by hand.
    grep -qx 'ionsvc:x:[0-9]*:' "$root/etc/group" || fail "the group ionsvc has members"
    grep -qx 'ionsvc-clients:x:[0-9]*:' "$root/etc/group" || fail "no empty group ionsvc-clients"

    local name
    name=$(sed -n 's/^User=//p' "$units/ionsvc.service")
    grep -q "^$name:" "$root/etc/passwd" || fail "ionsvc.service's User=$name is not created by sysusers"
    local daemon_group socket_group
    daemon_group=$(sed -n 's/^Group=//p' "$units/ionsvc.service")
    socket_group=$(sed -n 's/^SocketGroup=//p' "$units/ionsvc.socket")
    [[ $daemon_group == ionsvc && $socket_group == ionsvc-clients ]] ||
        fail "the daemon's Group= and the socket's SocketGroup= must be ionsvc and ionsvc-clients: '$daemon_group' '$socket_group'"
    for name in "$daemon_group" "$socket_group"; do
        grep -q "^$name:" "$root/etc/group" || fail "the group $name is named by a unit but not created by sysusers"
    done
    # The devices belong to the daemon's group, and to no other.
    local device_rules owned_by_daemon_group
    device_rules=$(grep -c 'GROUP=' "$stage$udevrulesdir/60-ionsvc.rules")
    owned_by_daemon_group=$(grep -c "GROUP=\"$daemon_group\"" "$stage$udevrulesdir/60-ionsvc.rules")
    ((device_rules == 3 && owned_by_daemon_group == 3)) ||
        fail "the udev rule must give its 3 devices to the group $daemon_group, and only to it"
    pass "sysusers creates the user ionsvc and every group the units and the udev rule name"
}

check_prefix_usr() {
    local build=$work/build-usr
    # Configured only: the service files need nothing built.
    if ! "$cmake" -S "$source_dir" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr \
        -DIONSVC_BUILD_TESTS=OFF -DIONSVC_BUILD_BENCH=OFF >"$work/configure.log" 2>&1; then
        cat "$work/configure.log" >&2
        fail "configuring for the prefix /usr failed"
    fi
    if ! DESTDIR=$stage "$cmake" --install "$build" --component service >"$work/install.log" 2>&1; then
        cat "$work/install.log" >&2
        fail "installing the service component for /usr failed"
    fi
    local difference
    difference=$(diff <(printf '%s\n' /etc/ionsvc/ionsvc.conf /usr/lib/systemd/system/ionsvc.service \
                        /usr/lib/systemd/system/ionsvc.socket /usr/lib/systemd/system/ionsvc-metrics.service \
                        /usr/lib/systemd/system/ionsvc-metrics.timer /usr/lib/sysusers.d/ionsvc.conf \
                        /usr/lib/udev/rules.d/60-ionsvc.rules /usr/share/doc/ionsvc/SYSTEMD.md \
                        /usr/share/doc/ionsvc/RECOVERY.md | sort) \
                      <(cd "$stage" && find . ! -type d | sed 's|^\.||' | sort)) ||
        fail "for the prefix /usr the service files are not where expected ('<' missing, '>' unexpected):"$'\n'"$difference"
    grep -qx "ExecStart=/usr/sbin/ionsvcd --config /etc/ionsvc/ionsvc.conf --fd-store-max 4096" "$stage/usr/lib/systemd/system/ionsvc.service" ||
        fail "for the prefix /usr, ExecStart= is: $(grep '^ExecStart=' "$stage/usr/lib/systemd/system/ionsvc.service")"
    pass "for the prefix /usr: units under /usr/lib/systemd/system, config /etc/ionsvc/ionsvc.conf, ExecStart=/usr/sbin/ionsvcd"
}

case $mode in
    layout) require systemd-socket-activate; check_layout ;;
    units) require systemd-analyze systemctl systemd-sysusers; check_units ;;
    prefix-usr) check_prefix_usr ;;
    *) echo "install_test: unknown mode '$mode'" >&2; exit 2 ;;
esac
