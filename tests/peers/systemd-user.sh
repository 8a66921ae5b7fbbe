#!/bin/sh
# A real systemd user manager for certsync's tests, without systemd as PID 1.
#
#   tests/peers/systemd-user.sh start DIR   # prints `export ...` lines for the caller
#   tests/peers/systemd-user.sh stop DIR    # stops the manager, its units and the bus
#
# DIR becomes XDG_RUNTIME_DIR; the session bus is unix:path=DIR/bus. Unit files go
# in DIR/systemd/user/ (then `systemctl --user daemon-reload`). Several instances
# (different DIRs) can run at once as the same user.
#
# The recipe (/work/shared/TESTBED.md, "systemd's D-Bus API"):
#   dbus-daemon --session --address=unix:path=DIR/bus --fork
#   unshare -m sh -c 'mount -t tmpfs tmpfs /run/systemd &&
#                     mkdir -p /run/systemd/system && exec /usr/lib/systemd/systemd --user'
# /run/systemd/system exists only inside the private mount namespace.
#
# Two things seen on these machines (systemd 252, cgroup v1 hybrid) change it:
#
# * The bus. The user manager's own dbus.socket (/usr/lib/systemd/user) unlinks
#   DIR/bus and binds it itself; the first client then socket-activates dbus.service
#   (a dbus-daemon run by the manager), and the manager only attaches to the bus once
#   dbus.socket and dbus.service both run (masking them leaves it off the bus for
#   good). A dbus-daemon started before, as in the recipe, is left listening on an
#   unlinked path, reachable by nobody. So the bus here is the manager's own
#   dbus.socket/dbus.service; no separate dbus-daemon. (Set SYSTEMD_USER_EXTRA_DBUS=1
#   to also start the recipe's dbus-daemon anyway; its pid goes to DIR/dbus.pid.)
#
# * cgroups. A manager started in the root cgroup takes the machine as its own: it
#   creates /init.scope and moves EVERY process of the root cgroup (PID 1, dockerd,
#   containerd, ...) into it, in every hierarchy. So each manager first gets its own
#   cgroup /certsync-test/<hash of DIR> (name=systemd and unified hierarchies) and
#   manages only that subtree. `stop` kills what is left there and removes it.
#
# * Sandboxing. A user manager run by root takes the nodes that InaccessiblePaths=
#   and ProtectHome=yes mount over hidden paths from /run/systemd/inaccessible/, as
#   the system manager does, and fails such a unit with 226/NAMESPACE when they are
#   missing. The private /run/systemd gets them (all but the socket node, which
#   only a hidden socket would need).
#
# Files in DIR: systemd.pid, systemd.log (stdout/stderr of the manager), cgroup (the
# manager's cgroup path, relative to each hierarchy), systemd/user/ (unit files).
set -eu

SYSTEMD_BIN=${SYSTEMD_BIN:-/usr/lib/systemd/systemd}
READY_TIMEOUT=${SYSTEMD_USER_READY_TIMEOUT:-20}
CG_MOUNT=/sys/fs/cgroup
CG_PARENT=certsync-test
# Default user units that only add listeners to DIR (gpg-agent, dirmngr, debconf):
# masked to keep DIR and the process table quiet.
MASKED_UNITS="dirmngr.socket gpg-agent.socket gpg-agent-browser.socket gpg-agent-extra.socket
 gpg-agent-ssh.socket pk-debconf-helper.socket"

die() { echo "systemd-user.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start|stop DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd -P)

# Hierarchies in which systemd finds its own cgroup: name=systemd (v1) and the
# unified one (hybrid: systemd 252 tracks processes there), or the root (pure v2).
cg_hierarchies() {
    found=""
    for h in "$CG_MOUNT/systemd" "$CG_MOUNT/unified"; do
        if [ -f "$h/cgroup.procs" ]; then echo "$h"; found=1; fi
    done
    if [ -z "$found" ] && [ -f "$CG_MOUNT/cgroup.controllers" ]; then echo "$CG_MOUNT"; fi
}

# Every mounted hierarchy (v1 controllers, name=systemd, unified; or the v2 root).
cg_all() {
    for h in "$CG_MOUNT"/*/; do
        h=${h%/}
        [ -f "$h/cgroup.procs" ] && echo "$h"
    done
    [ -f "$CG_MOUNT/cgroup.procs" ] && echo "$CG_MOUNT"
    return 0
}

# pids in a cgroup subtree (relative path), any hierarchy
cg_pids() {
    for h in $(cg_all); do
        [ -d "$h/$1" ] || continue
        find "$h/$1" -name cgroup.procs -exec cat {} \; 2>/dev/null || true
    done | sort -u
}

# rmdir a cgroup subtree (relative path) in every hierarchy, deepest first
cg_remove() {
    for h in $(cg_all); do
        [ -d "$h/$1" ] || continue
        find "$h/$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

pid_alive() {
    [ -n "$1" ] || return 1
    kill -0 "$1" 2>/dev/null || return 1
    # a zombie is not alive
    case $(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) in
    Z | X | "") return 1 ;;
    esac
    return 0
}

wait_gone() { # pid tenths
    i=0
    while pid_alive "$1" && [ "$i" -lt "$2" ]; do sleep 0.1; i=$((i + 1)); done
    ! pid_alive "$1"
}

do_stop() {
    spid=$(cat "$dir/systemd.pid" 2>/dev/null || true)
    dpid=$(cat "$dir/dbus.pid" 2>/dev/null || true)
    cg=$(cat "$dir/cgroup" 2>/dev/null || true)

    # SIGTERM makes a user manager start exit.target: units are stopped, then it exits.
    if pid_alive "$spid"; then
        kill -TERM "$spid" 2>/dev/null || true
        wait_gone "$spid" 100 || kill -KILL "$spid" 2>/dev/null || true
    fi
    # Whatever is left in its cgroup subtree (units with KillMode=none, a killed manager).
    case $cg in
    "$CG_PARENT"/?*)
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            pids=$(cg_pids "$cg")
            [ -n "$pids" ] || break
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            sleep 0.2
        done
        cg_remove "$cg"
        for h in $(cg_all); do rmdir "$h/$CG_PARENT" 2>/dev/null || true; done
        ;;
    esac
    if pid_alive "$dpid"; then
        kill -TERM "$dpid" 2>/dev/null || true
        wait_gone "$dpid" 30 || kill -KILL "$dpid" 2>/dev/null || true
    fi
    rm -f "$dir/systemd.pid" "$dir/dbus.pid" "$dir/cgroup" "$dir/bus"
}

do_start() {
    [ -x "$SYSTEMD_BIN" ] || die "$SYSTEMD_BIN not found (apt-get install systemd)"
    command -v dbus-daemon >/dev/null || die "dbus-daemon not found (apt-get install dbus)"
    command -v busctl >/dev/null || die "busctl not found (apt-get install systemd)"
    command -v unshare >/dev/null || die "unshare not found (util-linux)"
    if pid_alive "$(cat "$dir/systemd.pid" 2>/dev/null || true)"; then
        die "a manager already runs for $dir (stop it first)"
    fi
    # Only the mount point; /run/systemd/system is created inside the namespace.
    mkdir -p /run/systemd
    chmod 0700 "$dir"
    mkdir -p "$dir/systemd/user"
    # DIR/systemd/user overrides /usr/lib/systemd/user
    for u in $MASKED_UNITS; do ln -sfn /dev/null "$dir/systemd/user/$u"; done

    export XDG_RUNTIME_DIR="$dir"
    export DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/bus"

    if [ "${SYSTEMD_USER_EXTRA_DBUS:-0}" = 1 ]; then
        rm -f "$dir/bus"
        dbus-daemon --session --address="$DBUS_SESSION_BUS_ADDRESS" --fork \
            --print-pid=3 3>"$dir/dbus.pid" >/dev/null ||
            die "dbus-daemon failed to start on $DBUS_SESSION_BUS_ADDRESS"
    fi

    # Own cgroup for this manager (see the header).
    cg="$CG_PARENT/$(printf '%s' "$dir" | md5sum | cut -c1-12)"
    hier=$(cg_hierarchies)
    [ -n "$hier" ] || die "no cgroup hierarchy found under $CG_MOUNT"
    for h in $hier; do mkdir -p "$h/$cg" || die "cannot create cgroup $h/$cg"; done
    echo "$cg" >"$dir/cgroup"

    : >"$dir/systemd.log"
    # The subshell moves itself into that cgroup, then becomes unshare -> sh -> systemd
    # (each one exec's the next, so $! is the manager's pid).
    (
        for h in $hier; do echo 0 >"$h/$cg/cgroup.procs"; done
        exec unshare -m sh -c 'mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system &&
            i=/run/systemd/inaccessible && mkdir -m 0755 $i && mkdir -m 0000 $i/dir &&
            touch $i/reg && chmod 0000 $i/reg && mkfifo -m 0000 $i/fifo &&
            mknod -m 0000 $i/chr c 0 0 && mknod -m 0000 $i/blk b 0 0 &&
            exec "$0" --user' \
            "$SYSTEMD_BIN"
    ) </dev/null >>"$dir/systemd.log" 2>&1 &
    spid=$!
    echo "$spid" >"$dir/systemd.pid"

    # Ready when the manager answers on the bus with SystemState "running".
    deadline=$(($(date +%s) + READY_TIMEOUT))
    state=""
    while :; do
        if ! pid_alive "$spid"; then
            echo "--- $dir/systemd.log:" >&2
            tail -n 30 "$dir/systemd.log" >&2 || true
            do_stop
            die "systemd --user exited before it was ready"
        fi
        state=$(busctl --user get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
            org.freedesktop.systemd1.Manager SystemState 2>/dev/null || true)
        case $state in
        *'"running"'*) break ;;
        esac
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "--- last SystemState: ${state:-<no answer on $DBUS_SESSION_BUS_ADDRESS>}" >&2
            echo "--- $dir/systemd.log:" >&2
            tail -n 30 "$dir/systemd.log" >&2 || true
            do_stop
            die "systemd --user (pid $spid) not running after ${READY_TIMEOUT}s"
        fi
        sleep 0.1
    done

    # It must have stayed in its own cgroup, or it is managing the machine's root.
    if ! grep -q "/$cg" "/proc/$spid/cgroup"; then
        do_stop
        die "systemd --user is not in cgroup /$cg: refusing to leave it running"
    fi

    echo "export XDG_RUNTIME_DIR=$dir"
    echo "export DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/bus"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
*) usage ;;
esac
