#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all, on a fresh
# Debian machine as on a developer's: the real peers (Pebble, Traefik, coturn,
# certbot, a systemd user manager, promtool), then rustfmt, clippy and every test.
# A missing peer fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/peers/install.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Benchmarks are linted above and run with `cargo bench` or bench/compare.sh.
cargo test --locked "$@"
