//! Integration tests: the built binary, driven end to end. One test binary with
//! modules, so the crate links once.

#[path = "../support/mod.rs"]
mod support;

mod certbot;
mod daemon;
mod examples;
mod live;
mod metrics;
mod once;
mod reload_command;
mod reload_docker;
mod reload_peers;
mod reload_systemd;
mod sidecar;
mod validate;
mod verify;
