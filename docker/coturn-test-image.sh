#!/bin/sh
# Builds the local image certsync-test/coturn:local without any registry:
# FROM scratch + this machine's /usr/bin/turnserver (Debian's coturn), every shared
# library `ldd` lists, the dynamic loader, and the few files turnserver reads.
#
#   docker/coturn-test-image.sh [--force] [IMAGE]
#
# Skips the build when IMAGE exists, unless --force. Needs: coturn (apt-get install
# coturn), docker CLI + engine. Prints the image name on success.
#
# The image runs turnserver as root by default (ENTRYPOINT /usr/bin/turnserver), so a
# private key mounted read-only with mode 0600 stays readable. /etc/passwd and
# /etc/group have nobody/nogroup (the official image's user) for `--user 65534:65534`
# or turnserver's own --proc-user/--proc-group. Typical run (options as flags, no
# config file, log to stdout so `docker logs` shows it):
#
#   docker run -d --name X --network host -v CERTDIR:/certs:ro certsync-test/coturn:local \
#     -n --listening-ip=127.0.0.1 --listening-port=L --tls-listening-port=T \
#     --cert=/certs/fullchain.pem --pkey=/certs/privkey.pem --no-cli --log-file=stdout \
#     --simple-log --min-port=61000 --max-port=61099
set -eu

force=0
image=certsync-test/coturn:local
for a in "$@"; do
    case $a in
    --force) force=1 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "coturn-test-image.sh: unknown option $a" >&2; exit 2 ;;
    *) image=$a ;;
    esac
done

die() { echo "coturn-test-image.sh: $*" >&2; exit 1; }

TURNSERVER=${TURNSERVER:-/usr/bin/turnserver}
[ -x "$TURNSERVER" ] || die "$TURNSERVER not found (apt-get install coturn)"
command -v docker >/dev/null || die "docker CLI not found"
command -v ldd >/dev/null || die "ldd not found"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/coturn-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM
root=$ctx/rootfs

. "$(dirname "$0")/rootfs.sh"
rootfs_init "$root"
rootfs_add_binary "$root" "$TURNSERVER" || die "cannot collect $TURNSERVER and its libraries"

# OpenSSL's config (libcrypto reads OPENSSLDIR/openssl.cnf), so TLS defaults match the host.
for f in /usr/lib/ssl/openssl.cnf /etc/ssl/openssl.cnf; do
    [ -e "$f" ] && rootfs_add_file "$root" "$f"
done

mkdir -p "$root/etc" "$root/tmp" "$root/var/run" "$root/var/lib/turn" "$root/var/log" \
    "$root/certs" "$root/etc/coturn"
chmod 1777 "$root/tmp"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/nonexistent
nobody:x:65534:65534:nobody:/nonexistent:/nonexistent
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
# turnserver's default user database lives here; writable for nobody too.
chmod 0777 "$root/var/lib/turn" "$root/var/log"

cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="coturn for certsync tests" certsync-test=1
ENTRYPOINT ["/usr/bin/turnserver"]
CMD ["-n", "--log-file=stdout", "--no-cli"]
EOF

old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
# The CLI here has no buildx; the classic builder handles FROM scratch + COPY.
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null 2>"$ctx/build.err" || {
    cat "$ctx/build.err" >&2
    die "docker build failed"
}
# Smoke: the binary, its libraries and the loader are all there.
docker run --rm --network none "$image" --version >/dev/null 2>"$ctx/run.err" || {
    cat "$ctx/run.err" >&2
    die "the image was built but turnserver does not run in it"
}
# --force with changed contents: drop the image the tag pointed to (if unused).
new_id=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "$image"
