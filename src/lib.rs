//! certsync keeps a TLS server's certificate (coturn's, above all) in step with the one
//! an ACME client keeps: Traefik's acme.json, a certbot lineage, Caddy's storage, or
//! any PEM pair (a Kubernetes TLS Secret).
//!
//! Data flows one way, and each stage is a module:
//!
//! ```text
//! source ──► bundle ──► sink ──► reload ──► verify ──► metrics
//! (acme.json,  (select,    (atomic     (systemd,   (TLS probe:   (/metrics,
//!  certbot,     validate)   write,      docker,     is the new    /healthz,
//!  Caddy, PEM)              owner,      command)    leaf served?)  textfile)
//!                           mode)
//! ```
//!
//! [`pipeline`] runs one pass through every stage for every target and returns a
//! report; `--once` calls it once, and [`watch`] (the daemon) calls it on every change.
//! [`cli`] is what was typed; [`config`] is what was validated from it (flags,
//! environment, TOML). [`leaf`] reads what certsync needs from an X.509 leaf, [`dns`]
//! holds the name-matching rules, [`error`] renders an error with its causes, and
//! [`shutdown`] makes SIGTERM prompt without leaving a temporary file behind.

pub mod bundle;
pub mod cli;
pub mod config;
pub mod dns;
pub mod error;
pub mod export;
pub mod formats;
pub mod health;
pub mod leaf;
pub mod list;
pub mod logwriter;
pub mod metrics;
pub mod pair;
pub mod pipeline;
pub mod reload;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod verify;
pub mod watch;
