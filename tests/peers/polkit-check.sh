#!/bin/sh
# Asks a real polkitd what it decides for systemd's manage-units action, with only the
# given rule file loaded, without touching the machine's own bus or rules.
#
#   tests/peers/polkit-check.sh RULES_FILE USER:UNIT:VERB...
#
# For each USER:UNIT:VERB it prints `USER UNIT VERB yes` or `... no`: would polkit let
# a process of USER call systemd's KillUnit (verb kill) or RestartUnit (verb restart,
# and so on) on UNIT? systemd passes exactly these details (`unit`, `verb`) to polkit.
#
# How: in a private mount namespace, a tmpfs over /run/dbus holds a system bus of our
# own (dbus-daemon --system), tmpfs over the rules.d folders holds only RULES_FILE,
# and polkitd runs on that bus; `pkcheck` asks it about a
# process (sleep) running as USER. Needs root, dbus, polkitd, util-linux.
set -eu

[ $# -ge 2 ] || { echo "usage: $0 RULES_FILE USER:UNIT:VERB..." >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root" >&2; exit 2; }
POLKITD=/usr/lib/polkit-1/polkitd
[ -x "$POLKITD" ] || { echo "$0: $POLKITD not found (apt-get install polkitd)" >&2; exit 2; }

if [ "${POLKIT_CHECK_INSIDE:-}" != 1 ]; then
    rules=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    shift
    # /run/dbus is only a mount point on the host; it may not exist yet.
    mkdir -p /run/dbus
    exec env POLKIT_CHECK_INSIDE=1 unshare -m --propagation private sh "$0" "$rules" "$@"
fi

rules=$1
shift
work=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A copy first: RULES_FILE may well be in a folder about to be hidden.
cp "$rules" "$work/"
mount -t tmpfs tmpfs /run/dbus
for d in /usr/share/polkit-1/rules.d /etc/polkit-1/rules.d; do
    if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
done
cp "$work/$(basename "$rules")" /usr/share/polkit-1/rules.d/
chmod 0644 /usr/share/polkit-1/rules.d/*

dbus-daemon --system --fork --print-pid=3 3>"$work/dbus.pid"
pids="$(cat "$work/dbus.pid")"
# Started as root, polkitd switches to its own user `polkitd` itself.
"$POLKITD" >"$work/polkitd.log" 2>&1 &
pids="$pids $!"
# Ready once it owns its name on the bus.
i=0
until busctl --system status org.freedesktop.PolicyKit1 >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "$0: polkitd did not come up:" >&2
        cat "$work/polkitd.log" >&2
        exit 1
    fi
    sleep 0.1
done

for check in "$@"; do
    user=${check%%:*}
    rest=${check#*:}
    unit=${rest%%:*}
    verb=${rest#*:}
    setpriv --reuid "$user" --regid "$(id -g "$user")" --clear-groups sleep 30 &
    subject=$!
    # the subject's uid must be in place before polkit looks at it
    while [ "$(stat -c %u "/proc/$subject")" != "$(id -u "$user")" ]; do sleep 0.01; done
    if pkcheck --action-id org.freedesktop.systemd1.manage-units --process "$subject" \
        -d unit "$unit" -d verb "$verb" >/dev/null 2>&1; then
        answer=yes
    else
        answer=no
    fi
    kill "$subject"
    echo "$user $unit $verb $answer"
done
