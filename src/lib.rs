//! certsync keeps a TURN server's TLS certificate in step with the one Traefik (or
//! certbot) gets from Let's Encrypt.
//!
//! Data flows one way through these modules:
//!
//! ```text
//! source ──► bundle ──► sink ──► reload ──► verify
//! (acme.json,  (select,    (atomic     (systemd,   (TLS probe:
//!  certbot)     validate)   write)      docker,     is the new
//!                                       command)    leaf served?)
//! ```
//!
//! [`pass`] runs source → bundle → sink for one target; [`once`] runs a pass over every
//! target and exits (cron, certbot hook); `watch` repeats passes on every change.
//! [`config`] is what was validated from [`cli`] (flags, environment, TOML).

pub mod bundle;
pub mod cli;
pub mod config;
pub mod leaf;
pub mod list;
pub mod pass;
pub mod reload;
pub mod sink;
pub mod source;

use std::time::Duration;

use backon::BackoffBuilder;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::pass::{Synced, TargetError};
use crate::source::Candidates;

/// How long `--once` waits for a half-written acme.json to become whole (contract rule 4).
pub const ONCE_SOURCE_PATIENCE: Duration = Duration::from_secs(3);

/// Backoff for a source that is not ready: from the debounce up to 2 s between reads,
/// for at most `total`.
pub fn not_ready_backoff(
    debounce: Duration,
    total: Option<Duration>,
) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(debounce.max(Duration::from_millis(1)))
        .with_max_delay(Duration::from_secs(2))
        .with_total_delay(total)
        .without_max_times()
        .build()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The outcome of one pass over every target, in config order.
pub type PassOutcome = Vec<Result<Synced, TargetError>>;

/// Syncs every target's files from already-parsed candidates, logging one line each.
pub fn sync_targets(config: &Config, candidates: &Candidates<'_>) -> PassOutcome {
    for s in &candidates.skipped {
        let resolver = s.resolver.as_deref().unwrap_or("-");
        warn!(source = %config.source, resolver, main = %s.main, "skipping an entry: {}", s.reason);
    }
    let now = unix_now();
    config
        .targets
        .iter()
        .map(|target| {
            let result = pass::sync_target(target, candidates, now, config.dry_run);
            log_result(config, &target.name, &result);
            result
        })
        .collect()
}

fn log_result(config: &Config, target: &str, result: &Result<Synced, TargetError>) {
    match result {
        Ok(s) => {
            let verb = match (config.dry_run, s.written.is_empty()) {
                (true, false) => "would write",
                (true, true) if !s.repaired.is_empty() => "would repair owner/mode of",
                (false, false) => "wrote",
                (false, true) if !s.repaired.is_empty() => "repaired owner/mode of",
                _ => "unchanged",
            };
            let files = if s.written.is_empty() {
                &s.repaired
            } else {
                &s.written
            };
            info!(
                target,
                result = s.result_label(),
                serial = %s.bundle.leaf.serial,
                not_after = %s.bundle.leaf.not_after_rfc3339(),
                from = %s.bundle.origin,
                "{verb} {}",
                if files.is_empty() { "nothing".to_owned() } else { files.join(", ") }
            );
        }
        Err(e) => error!(target, result = "error", "{e}"),
    }
}

/// `--once`: one pass over every target. Returns whether every target is in sync.
pub async fn once(config: &Config) -> bool {
    let backoff = not_ready_backoff(config.debounce, Some(ONCE_SOURCE_PATIENCE));
    match source::read_when_ready(&config.source, backoff, |c| sync_targets(config, c)).await {
        Ok(outcome) => outcome.iter().all(Result::is_ok),
        Err(e) => {
            error!(result = "error", "{e}; no file was changed");
            false
        }
    }
}
