#!/usr/bin/env bash
# The soak: a live Traefik renewing about once a minute, certsync and coturn under a
# systemd user manager (signal mode), a TURN client streaming over TLS the whole time.
# CERTSYNC_SOAK_MINUTES sets the length (15 by default). Run on its own, or by
# `CERTSYNC_SOAK=1 bash tests/run.sh` after the normal tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/peers/install.sh
cargo test --locked --test it soak:: -- --ignored --nocapture
