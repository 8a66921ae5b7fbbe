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
pub mod metrics;
pub mod pass;
pub mod reload;
pub mod sink;
pub mod source;
pub mod verify;
pub mod watch;

use std::time::Duration;

use backon::BackoffBuilder;
use tracing::{error, info, warn};

use crate::config::{Config, Target};
use crate::metrics::Metrics;
use crate::pass::{Synced, TargetError};
use crate::reload::ReloadError;
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

/// Syncs every target's files from already-parsed candidates, logging and counting one
/// result per target.
pub fn sync_targets(
    config: &Config,
    candidates: &Candidates<'_>,
    metrics: &Metrics,
) -> PassOutcome {
    metrics.set_source_up(true);
    for s in &candidates.skipped {
        let resolver = s.resolver.as_deref().unwrap_or("-");
        warn!(source = %config.source, resolver, main = %s.main, "skipping an entry: {}", s.reason);
    }
    let now = unix_now();
    let outcome = config
        .targets
        .iter()
        .map(|target| {
            let result = pass::sync_target(target, candidates, now, config.dry_run);
            record_result(config, target, &result, metrics, now);
            result
        })
        .collect();
    outcome
}

/// What a pass needs from the source: the entries its targets could select.
pub fn interest(config: &Config) -> source::Interest {
    source::Interest::targets(
        config
            .targets
            .iter()
            .map(|t| (t.domain.as_deref(), t.resolver.as_deref())),
    )
}

/// Sets the not-after of every certificate in the source, from candidates read with
/// their leaves ([`source::Interest::with_leaves`]).
pub fn record_source_certificates(metrics: &Metrics, candidates: &Candidates<'_>) {
    metrics.set_source_certificates(list::rows(candidates).into_iter().filter_map(|r| {
        let not_after = r.leaf.ok()?.not_after;
        Some((r.resolver, r.main, not_after))
    }));
}

/// A source that could not be read fails every target.
pub fn record_source_failure(config: &Config, error: &source::SourceError, metrics: &Metrics) {
    error!(result = "error", "{error}; no file was changed");
    metrics.set_source_up(false);
    metrics.record_source_failure(
        config.targets.iter().map(|t| t.name.clone()),
        &error.to_string(),
    );
}

fn record_result(
    config: &Config,
    target: &Target,
    result: &Result<Synced, TargetError>,
    metrics: &Metrics,
    now: i64,
) {
    let name = target.name.as_str();
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
                target = name,
                result = s.result_label(),
                serial = %s.bundle.leaf.serial,
                not_after = %s.bundle.leaf.not_after_rfc3339(),
                from = %s.bundle.origin,
                "{verb} {}",
                if files.is_empty() { "nothing".to_owned() } else { files.join(", ") }
            );
            let domain = target
                .domain
                .as_deref()
                .or(s.bundle.leaf.names.first().map(String::as_str))
                .unwrap_or("");
            metrics.record_success(name, domain, &s.bundle.leaf, s.result_label(), now);
        }
        Err(e) => {
            error!(target = name, result = "error", "{e}");
            metrics.record_failure(name, &e.to_string());
        }
    }
}

/// Reloads a target's reader if its files changed now or a reload is still owed.
/// `None` when no reload was due.
pub async fn reload_target(
    target: &Target,
    synced: &Synced,
    dry_run: bool,
    metrics: &Metrics,
) -> Option<Result<String, ReloadError>> {
    let spec = target.reload.as_ref()?;
    let pending = reload::Pending::for_target(&target.out);
    if synced.written.is_empty() && !pending.is_set() {
        return None;
    }
    if dry_run {
        info!(target = %target.name, "would reload: {spec:?}");
        return None;
    }
    if let Err(e) = pending.set() {
        warn!(target = %target.name, "cannot record the pending reload: {e}");
    }
    let written = reload::Written {
        target: target.name.clone(),
        domain: target.domain.clone().unwrap_or_else(|| {
            synced
                .bundle
                .leaf
                .names
                .first()
                .cloned()
                .unwrap_or_default()
        }),
        cert_path: target.out.dir.join(&target.out.cert_file),
        key_path: target.out.dir.join(&target.out.key_file),
        leaf_der: synced.bundle.leaf_der.clone(),
    };
    let result = reload::run(spec, &written).await;
    let method = spec.method.as_ref().map_or("verify", reload::Method::label);
    metrics.record_reload(
        &target.name,
        method,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    );
    match &result {
        Ok(done) => {
            if let Err(e) = pending.clear() {
                warn!(target = %target.name, "cannot clear the pending reload: {e}");
            }
            info!(target = %target.name, method, result = "ok", "reloaded: {done}");
        }
        Err(e) => {
            error!(target = %target.name, method, result = "error", "reload failed, the files stay written: {e}")
        }
    }
    Some(result)
}

/// `--once`: one pass over every target, then the textfile if asked. Returns whether
/// every target is in sync.
pub async fn once(config: &Config) -> bool {
    let metrics = Metrics::new(config.expiry_warning, config.expiry_critical);
    metrics.expect_targets(
        &config
            .targets
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>(),
    );
    let backoff = not_ready_backoff(config.debounce, Some(ONCE_SOURCE_PATIENCE));
    // The per-certificate metrics cost a look at every leaf: only for a textfile.
    let want_source_metrics = config.textfile.is_some() && !config.dry_run;
    let interest = interest(config).with_leaves(want_source_metrics);
    let read = source::read_when_ready_for(&config.source, &interest, backoff, |c| {
        let outcome = sync_targets(config, c, &metrics);
        if want_source_metrics {
            record_source_certificates(&metrics, c);
        }
        outcome
    });
    let all_ok = match read.await {
        Ok(outcome) => {
            let mut all_ok = true;
            for (target, result) in config.targets.iter().zip(&outcome) {
                all_ok &= match result {
                    Ok(synced) => !matches!(
                        reload_target(target, synced, config.dry_run, &metrics).await,
                        Some(Err(_))
                    ),
                    Err(_) => false,
                };
            }
            all_ok
        }
        Err(e) => {
            record_source_failure(config, &e, &metrics);
            false
        }
    };
    if let Some(path) = config.textfile.as_deref().filter(|_| !config.dry_run) {
        if let Err(e) = metrics::textfile::write(path, &metrics.encode(unix_now())) {
            error!("cannot write the metrics textfile: {e}");
            return false;
        }
    }
    all_ok
}
