#!/bin/sh
# Builds the two base images docker/Dockerfile needs, on a machine that cannot reach
# any registry: both come from Debian bookworm's own packages (debootstrap), plus this
# machine's Rust toolchain for the builder.
#
#   certsync-local/rust:bookworm     debootstrap minbase + gcc, libc6-dev, ca-certificates,
#                                    and the toolchain of `rustc --print sysroot` in
#                                    /usr/local/rust (stands in for rust:1-bookworm)
#   certsync-local/runtime:bookworm  glibc, libgcc_s, the CA bundle and a `nonroot`
#                                    user (65532), taken from the same Debian tree
#                                    (stands in for gcr.io/distroless/cc-debian12:nonroot)
#
#   docker/local-bases.sh [--force]
#   docker build -f docker/Dockerfile -t certsync:local \
#       --build-arg BUILDER_IMAGE=certsync-local/rust:bookworm \
#       --build-arg RUNTIME_IMAGE=certsync-local/runtime:bookworm .
#
# Skips an image that exists unless --force. Needs root (debootstrap), the debootstrap
# package, a Debian mirror (DEBIAN_MIRROR, default deb.debian.org) and the docker CLI.
# Prints the two image names.
set -eu

force=0
for a in "$@"; do
    case $a in
    --force) force=1 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "local-bases.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

BUILDER=certsync-local/rust:bookworm
RUNTIME=certsync-local/runtime:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "local-bases.sh: $*" >&2; exit 1; }
have() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

if have "$BUILDER" && have "$RUNTIME"; then
    echo "$BUILDER"
    echo "$RUNTIME"
    exit 0
fi

command -v docker >/dev/null || die "docker CLI not found"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
sysroot=$(rustc --print sysroot) || die "no Rust toolchain (rustc --print sysroot failed)"
host=$(rustc -vV | sed -n 's/^host: //p')
[ -x "$sysroot/bin/cargo" ] || die "$sysroot/bin/cargo not found: the toolchain has no cargo"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/certsync-bases.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/debian

# gcc links (and builds ring's C and assembly); ca-certificates lets cargo reach
# crates.io over TLS and gives the runtime its CA bundle.
echo "local-bases.sh: debootstrap bookworm from $MIRROR" >&2
debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed"
}

# The runtime's CA bundle is Debian's; the builder's is this machine's, which may hold
# the CA of an egress proxy that cargo must trust to fetch crates.
cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$work/debian-ca-certificates.crt"

if ! have "$BUILDER"; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    # The toolchain without its docs and sources: bin (cargo, rustc), the compiler's
    # shared libraries, and the standard library and linker wrappers for this host.
    rust=$root/usr/local/rust
    mkdir -p "$rust/bin" "$rust/lib/rustlib"
    cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$rust/bin/"
    cp -a "$sysroot"/lib/*.so* "$rust/lib/"
    cp -a "$sysroot/lib/rustlib/$host" "$rust/lib/rustlib/"
    # Keep the image free of apt's downloaded packages and lists.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'LABEL org.opencontainers.image.description="Debian bookworm with gcc and a Rust toolchain, built locally"' \
        - "$BUILDER" >/dev/null || die "docker import $BUILDER failed"
    docker run --rm --network none "$BUILDER" cargo --version >/dev/null ||
        die "$BUILDER was built but cargo does not run in it"
fi

if ! have "$RUNTIME"; then
    rt=$work/runtime
    mkdir -p "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot"
    chmod 1777 "$rt/tmp"
    # Debian bookworm is merged-/usr: /lib, /lib64, /bin are symlinks into /usr.
    for d in bin sbin lib lib64; do
        if [ -L "$root/$d" ]; then
            cp -a "$root/$d" "$rt/$d"
            mkdir -p "$rt/$(readlink "$root/$d")"
        fi
    done
    # What a Rust binary linked against glibc loads: the libc6 and libgcc-s1 packages'
    # libraries and the loader. Not gconv (iconv modules) or the locale tools.
    for pkg in libc6 libgcc-s1; do
        dpkg-query --admindir="$root/var/lib/dpkg" -L "$pkg:amd64" 2>/dev/null ||
            dpkg-query --admindir="$root/var/lib/dpkg" -L "$pkg"
    done | grep -E '^/(usr/)?lib(64|/x86_64-linux-gnu)/[^/]+$' | sort -u | while read -r f; do
        mkdir -p "$rt$(dirname "$f")"
        cp -a "$root$f" "$rt$f"
    done
    cp "$work/debian-ca-certificates.crt" "$rt/etc/ssl/certs/ca-certificates.crt"
    cat >"$rt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
    cat >"$rt/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
nogroup:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rt/etc/nsswitch.conf"
    chown 65532:65532 "$rt/home/nonroot"
    tar -C "$rt" -c . | docker import \
        --change 'USER 65532:65532' \
        --change 'LABEL org.opencontainers.image.description="glibc, libgcc_s and CA certificates from Debian bookworm, built locally"' \
        - "$RUNTIME" >/dev/null || die "docker import $RUNTIME failed"
fi

echo "$BUILDER"
echo "$RUNTIME"
