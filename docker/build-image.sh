#!/bin/sh
# Builds the certsync sidecar image from a local binary, without any registry:
# FROM scratch, the binary, the libraries ldd lists, and passwd/group files.
#
#   cargo build --release && docker/build-image.sh                # -> certsync:local
#   docker/build-image.sh --binary target/debug/certsync certsync:dev
#
# The image runs as root: it must chown the files it writes to coturn's user and
# talk to the Docker socket. Give owners by number in a container (coturn's official
# image runs as nobody:nogroup, 65534:65534); only root and nobody have names here.
set -eu

binary=target/release/certsync
image=certsync:local
while [ $# -gt 0 ]; do
    case $1 in
    --binary) binary=$2; shift ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "build-image.sh: unknown option $1" >&2; exit 2 ;;
    *) image=$1 ;;
    esac
    shift
done

die() { echo "build-image.sh: $*" >&2; exit 1; }
[ -x "$binary" ] || die "$binary not found: run cargo build --release first"
command -v docker >/dev/null || die "docker CLI not found"

ctx=$(mktemp -d "${TMPDIR:-/tmp}/certsync-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM
root=$ctx/rootfs

. "$(dirname "$0")/rootfs.sh"
rootfs_init "$root"
mkdir -p "$root/usr/local/bin"
cp "$binary" "$root/usr/local/bin/certsync"
rootfs_add_binary "$root" "$(readlink -f "$binary")" || die "cannot collect the libraries of $binary"
rm -f "$root$(readlink -f "$binary")"
mkdir -p "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="certsync" \
      org.opencontainers.image.description="Keeps coturn's TLS certificate in step with Traefik's acme.json"
# In a container the metrics must be reachable from outside it.
ENV CERTSYNC_METRICS_LISTEN=0.0.0.0:9731
EXPOSE 9731
ENTRYPOINT ["/usr/local/bin/certsync"]
DOCKERFILE

# The CLI on these machines has no buildx; the classic builder does FROM scratch + COPY.
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null 2>"$ctx/build.err" || {
    cat "$ctx/build.err" >&2
    die "docker build failed"
}
docker run --rm --network none "$image" --version >/dev/null || die "the image was built but certsync does not run in it"
echo "$image"
