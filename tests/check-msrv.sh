#!/usr/bin/env bash
# Checks that Cargo.toml's rust-version is the true minimum: no locked dependency
# declares a newer one, and at least one declares exactly it (otherwise it could be
# lower). Our own code is held to it by clippy's incompatible_msrv lint, which reads
# the same field (tests/run.sh runs clippy with -D warnings).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
def ver(s): return tuple(int(x) for x in (s.split(".") + ["0", "0"])[:3])
ours = next(p for p in meta["packages"] if p["name"] == "certsync")
declared = ours["rust_version"]
msrv = ver(declared)
deps = [(ver(p["rust_version"]), p["name"], p["version"])
        for p in meta["packages"] if p.get("rust_version") and p["name"] != "certsync"]
newest = max(deps)
shown = ".".join(map(str, newest[0]))
if newest[0] > msrv:
    sys.exit(f"rust-version {declared} is too low: {newest[1]} {newest[2]} needs {shown}")
if newest[0] < msrv:
    sys.exit(f"rust-version {declared} is higher than needed: the newest dependency needs {shown} ({newest[1]} {newest[2]})")
print(f"rust-version {declared}: the minimum the locked dependencies allow ({newest[1]} {newest[2]})")
'
