#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all, on a fresh
# Debian machine as on a developer's: the real peers (Pebble, Traefik, coturn,
# certbot, a systemd user manager, promtool), then rustfmt, clippy and every test.
# A missing peer fails the run; nothing is skipped. Then every fuzz target runs for
# FUZZ_SECONDS (default 60) each; a crash fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/peers/install.sh
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
bash tests/check-msrv.sh
cargo clippy --locked --all-targets -- -D warnings
# Benchmarks are linted above and run with `cargo bench` or benches/compare.sh.
cargo test --locked "$@"
bash fuzz/run.sh "${FUZZ_SECONDS:-60}"
# The 15-minute soak (tests/soak.sh), only when asked for.
if [ "${CERTSYNC_SOAK:-}" = 1 ]; then
    cargo test --locked --test it soak:: -- --ignored --nocapture
fi
