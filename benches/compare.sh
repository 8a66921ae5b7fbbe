#!/usr/bin/env bash
# certsync --once against traefik-certificate-exporter (PyPI) on one big acme.json.
#
#   benches/compare.sh [N] [RUNS]      # N certificates (default 5000, ~29 MB), RUNS per tool (10)
#   CERTSYNC_BIN=/path/to/certsync benches/compare.sh    # time that build instead
#
# Builds the file from the real fixture (benches/make-big-acme.py; the selected domain,
# www.example.test, is the last entry), builds certsync --release, installs the exporter
# in a venv under target/, then runs both on the same file with the same domain filter,
# RUNS times each in this one invocation: medians, the ratio, and peak RSS. Then
# `certsync list` on the same file. Uses hyperfine when installed (Debian: apt-get
# install hyperfine), else a plain loop; peak RSS needs /usr/bin/time (Debian: time).
set -euo pipefail

N=${1:-5000}
RUNS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/target/bench
VENV=$ROOT/target/bench-venv
DOMAIN=www.example.test
mkdir -p "$WORK"

echo "== input"
DATA=$WORK/data-$N
mkdir -p "$DATA"
python3 "$ROOT/benches/make-big-acme.py" "$N" "$DATA/acme.json"
ACME=$DATA/acme.json

echo "== build"
if [ -n "${CERTSYNC_BIN:-}" ]; then
    CERTSYNC=$CERTSYNC_BIN
else
    (cd "$ROOT" && cargo build --release --quiet)
    CERTSYNC=$ROOT/target/release/certsync
fi
if [ ! -x "$VENV/bin/traefik-certificate-exporter" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet traefik-certificate-exporter
fi
EXPORTER=$VENV/bin/traefik-certificate-exporter
echo "certsync $("$CERTSYNC" --version | awk '{print $2}'), traefik-certificate-exporter $("$VENV/bin/pip" show traefik-certificate-exporter | awk '/^Version/{print $2}')"
echo "$(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"

OUT_C=$WORK/out-certsync
OUT_E=$WORK/out-exporter
# Same input, same filter, one pass each; both end when the pass is done. certsync writes
# fullchain.pem and privkey.pem; the exporter writes its usual set (cert, chain,
# fullchain, privkey, pfx) for the one domain -id lets through.
CMD_C="$CERTSYNC --once --acme $ACME --domain $DOMAIN --out-dir $OUT_C"
CMD_E="$EXPORTER -d $DATA -o $OUT_E --no-dotenv -r -id $DOMAIN"
CMD_L="$CERTSYNC list --acme $ACME"

# A first run of each leaves the files written: every timed run is the steady state
# (nothing to change), as in a cron job or a deploy hook.
$CMD_C 2>/dev/null
$CMD_E >/dev/null 2>&1
test -s "$OUT_C/fullchain.pem" && test -s "$OUT_E/le/$DOMAIN/fullchain.pem"
cmp -s "$OUT_C/fullchain.pem" "$OUT_E/le/$DOMAIN/fullchain.pem" \
    && echo "both wrote the same fullchain.pem" || echo "note: the fullchain.pem files differ"

# Median wall time in ms of RUNS runs of a command.
median_ms() {
    local cmd=$1
    if command -v hyperfine >/dev/null; then
        local json
        json=$(mktemp)
        hyperfine --style none -N --warmup 2 --runs "$RUNS" --export-json "$json" "$cmd" >/dev/null 2>&1 \
            || hyperfine --style none --warmup 2 --runs "$RUNS" --export-json "$json" "$cmd" >/dev/null 2>&1
        python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1e3))' "$json"
        rm -f "$json"
    else
        local times=()
        for _ in $(seq "$RUNS"); do
            local t0 t1
            t0=$(date +%s%N)
            $cmd >/dev/null 2>&1
            t1=$(date +%s%N)
            times+=($(( (t1 - t0) / 1000 )))
        done
        printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f\n", m / 1000}'
    fi
}

# Median peak RSS in MB of RUNS runs.
peak_mb() {
    local cmd=$1
    if [ ! -x /usr/bin/time ]; then
        echo "n/a"
        return
    fi
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -1
    done | sort -n | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)] / 1024}'
}

echo "== timing ($RUNS runs each, $(command -v hyperfine >/dev/null && echo hyperfine || echo loop))"
SIZE=$(python3 -c 'import os,sys; print("%.1f MB" % (os.path.getsize(sys.argv[1]) / 1e6))' "$ACME")
C_MS=$(median_ms "$CMD_C"); C_MB=$(peak_mb "$CMD_C")
E_MS=$(median_ms "$CMD_E"); E_MB=$(peak_mb "$CMD_E")
L_MS=$(median_ms "$CMD_L"); L_MB=$(peak_mb "$CMD_L")

echo
echo "input: $N certificates, $SIZE, --domain $DOMAIN (the last entry)"
printf '%-40s %12s %14s\n' "" "median ms" "peak RSS MB"
printf '%-40s %12s %14s\n' "certsync --once" "$C_MS" "$C_MB"
printf '%-40s %12s %14s\n' "traefik-certificate-exporter -r -id" "$E_MS" "$E_MB"
printf '%-40s %12s %14s\n' "certsync list" "$L_MS" "$L_MB"
python3 -c 'import sys; c, e = map(float, sys.argv[1:]); print("ratio: the exporter takes %.1fx the time of certsync --once" % (e / c))' "$C_MS" "$E_MS"
