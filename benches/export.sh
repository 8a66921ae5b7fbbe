#!/usr/bin/env bash
# certsync --all against traefik-certificate-exporter (PyPI): a full export of a big
# acme.json, on tmpfs and on the project's disk, then a running daemon's latency from a
# renewal to the new files in place.
#
#   benches/export.sh [N]          # N certificates (default 5000, ~27 MB)
#   CERTSYNC_BIN=/path/to/certsync benches/export.sh
#
# The file comes from benches/make-valid-acme.py (every certificate valid for its own
# name; make-big-acme.py's copies would all be refused). Both tools start from an empty
# OUT each run; certsync writes fullchain.pem, privkey.pem and a PKCS#12 per folder,
# the exporter its usual cert, chain, fullchain, privkey and pfx. Wall time and peak RSS
# come from /usr/bin/time (Debian: time).
set -euo pipefail

N=${1:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/target/bench/export
VENV=$ROOT/target/bench-venv
SHM=${SHM:-/dev/shm}/certsync-export-bench
mkdir -p "$WORK"

echo "== build"
if [ -n "${CERTSYNC_BIN:-}" ]; then
    CERTSYNC=$CERTSYNC_BIN
else
    (cd "$ROOT" && cargo build --release --quiet)
    CERTSYNC=$ROOT/target/release/certsync
fi
if [ ! -x "$VENV/bin/traefik-certificate-exporter" ] || ! "$VENV/bin/python" -c 'import cryptography' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet traefik-certificate-exporter cryptography
fi
EXPORTER=$VENV/bin/traefik-certificate-exporter
echo "certsync $("$CERTSYNC" --version | awk '{print $2}'), traefik-certificate-exporter $("$VENV/bin/pip" show traefik-certificate-exporter | awk '/^Version/{print $2}')"
echo "$(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"

echo "== input"
DATA=$WORK/data-$N
mkdir -p "$DATA"
if [ ! -s "$DATA/acme.json" ] || [ ! -s "$DATA/renewals.json" ]; then
    "$VENV/bin/python" "$ROOT/benches/make-valid-acme.py" "$N" "$DATA/acme.json" --renewals "$DATA/renewals.json"
fi
PASSWORD=$WORK/p12-password
printf 'bench' > "$PASSWORD"

# wall seconds and peak RSS (MB) of one run, from an empty OUT
measure() {
    local out=$1
    shift
    rm -rf "$out"
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || {
        tail -5 "$WORK/stderr"
        return 1
    }
    awk '{printf "%8.2f s %8.1f MB", $1, $2 / 1024}' "$WORK/time"
}

echo "== first full export, $N certificates ($(du -m "$DATA/acme.json" | cut -f1) MB)"
for where in tmpfs disk; do
    if [ $where = tmpfs ]; then base=$SHM; else base=$WORK/out; fi
    mkdir -p "$base"
    printf '%-6s certsync --once --all --pkcs12-file   %s\n' $where \
        "$(measure "$base/certsync" "$CERTSYNC" --once --acme "$DATA/acme.json" --all --out-dir "$base/certsync" \
            --pkcs12-file cert.p12 --pkcs12-password-file "$PASSWORD" --metrics-listen off)"
    printf '%-6s certsync --once --all                 %s\n' $where \
        "$(measure "$base/certsync" "$CERTSYNC" --once --acme "$DATA/acme.json" --all --out-dir "$base/certsync" --metrics-listen off)"
    printf '%-6s traefik-certificate-exporter -r     %s\n' $where \
        "$(measure "$base/exporter" "$EXPORTER" -d "$DATA" -o "$base/exporter" --no-dotenv -r)"
    echo "       folders: certsync $(find "$base/certsync" -mindepth 1 -maxdepth 1 -type d | wc -l), exporter $(find "$base/exporter" -mindepth 2 -maxdepth 2 -type d | wc -l)"
done

echo "== a later pass: the daemon, one renewal at a time"
for where in tmpfs disk; do
    if [ $where = tmpfs ]; then base=$SHM; else base=$WORK/out; fi
    cp "$DATA/acme.json" "$base/acme.json"
    printf '%-6s ' $where
    python3 "$ROOT/benches/export-latency.py" "$CERTSYNC" "$base/acme.json" "$DATA/renewals.json" "$base/certsync" | paste -sd ';'
done
rm -rf "$SHM"
