//! Integration tests: the built binary, driven end to end. One test binary with
//! modules, so the crate links once.

#[path = "../support/mod.rs"]
mod support;

mod caddy;
mod certbot;
mod compose;
mod daemon;
mod deb;
mod examples;
mod export;
mod faults;
mod hostile;
mod live;
mod metrics;
mod once;
mod pair_atomic;
mod pem_pair;
mod reload_command;
mod reload_docker;
mod reload_first_start;
mod reload_signal;
mod reload_systemd;
mod sidecar;
mod soak;
mod validate;
mod verify;
