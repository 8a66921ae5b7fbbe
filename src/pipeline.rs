//! One pass over every target: read the source once → select and validate → write →
//! reload → verify → record. `--once` runs one pass (waiting out a half-written
//! source); the daemon runs one on every change. Both get a [`Report`].
//!
//! The stages that touch disks (reading a 30 MB acme.json, fsyncs, encoding metrics)
//! run on tokio's blocking pool, so the runtime thread keeps answering `/healthz` and
//! signals during a pass. The reloads are async and can be abandoned at any await: a
//! shutdown drops the pass there (a reload command's process group is killed with it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tracing::{error, info, warn};

use crate::bundle::{self, Bundle, SelectError, ValidateError};
use crate::config::{Config, Target};
use crate::error::Chain;
use crate::leaf::unix_now;
use crate::metrics::Metrics;
use crate::pair;
use crate::reload::{self, pending::Pending, ReloadError};
use crate::sink::{self, Action, SinkError, Wanted};
use crate::source::{Candidates, Interest, Snapshot, SourceError};

/// How long `--once` waits for a half-written acme.json to become whole (contract rule 4).
pub const ONCE_SOURCE_PATIENCE: Duration = Duration::from_secs(3);

/// What one pass did.
#[derive(Debug)]
pub struct Report {
    pub source: SourceRead,
    pub targets: Vec<TargetReport>,
    pub exports: Vec<crate::export::ExportReport>,
}

/// What became of the source in a pass.
#[derive(Debug)]
pub enum SourceRead {
    /// Read and parsed; xxh3-128 of its content.
    Read(u128),
    /// Read, and identical to the version the caller already synced: nothing else done.
    Unchanged,
    Failed(SourceError),
}

/// What a pass did for one target.
#[derive(Debug)]
pub struct TargetReport {
    pub name: String,
    pub synced: Result<Synced, TargetError>,
    /// `None` when no reload was due (or it was left to a retry already scheduled).
    pub reload: Option<ReloadAttempt>,
}

/// A reload a pass made, with what a retry needs to make it again.
#[derive(Debug)]
pub struct ReloadAttempt {
    pub written: reload::Written,
    pub result: Result<reload::Report, ReloadError>,
}

impl Report {
    /// Whether every target is in sync and every reload it needed succeeded: exit 0.
    pub fn all_ok(&self) -> bool {
        !matches!(self.source, SourceRead::Failed(_))
            && self
                .targets
                .iter()
                .all(|t| t.synced.is_ok() && t.reload.as_ref().is_none_or(|r| r.result.is_ok()))
            && self.exports.iter().all(crate::export::ExportReport::all_ok)
    }
}

/// What a successful sync did to a target's files.
#[derive(Debug)]
pub struct Synced {
    /// The leaf written, and where it came from; no key. Shared: an export's folders
    /// that did not change report what the last pass found without copying it.
    pub leaf: Arc<crate::leaf::Leaf>,
    pub leaf_der: Arc<[u8]>,
    pub origin: Arc<str>,
    /// The domain the leaf was chosen for.
    pub domain: Arc<str>,
    /// Files whose content was replaced (a reload is due when non-empty).
    pub written: Vec<String>,
    /// Unchanged files whose owner or mode was fixed.
    pub repaired: Vec<String>,
}

impl Synced {
    /// The `result` label of `certsync_sync_total`.
    pub fn result_label(&self) -> &'static str {
        if self.written.is_empty() {
            "unchanged"
        } else {
            "written"
        }
    }
}

/// Why a target could not be brought in sync. Its files stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error(transparent)]
    Folder(#[from] crate::export::FolderError),
    #[error("the source holds no certificate")]
    Empty,
}

/// How a pass is run.
#[derive(Debug, Default)]
pub struct PassOptions {
    /// Stop after reading when the source's hash is this one (a change event whose
    /// rewrite left the content as it was).
    pub skip_if_unchanged: Option<u128>,
    /// Targets with a failed reload waiting for its retry: unless their files change,
    /// the retry's backoff decides when to try again, not this pass.
    pub retrying: HashSet<String>,
    /// Update `certsync_acme_certificate_not_after_seconds` from this read.
    pub source_metrics: bool,
    /// Look at every exported folder on disk, not only those whose entries changed
    /// since the last pass (see [`crate::export::Memo`]).
    pub recheck: bool,
}

/// Runs one pass: reads the source once, brings every target in line, reloads what
/// changed (or is still owed), and records each result in the log and the metrics.
pub async fn pass(config: Arc<Config>, metrics: Arc<Metrics>, options: PassOptions) -> Report {
    let written = {
        let (config, metrics) = (config.clone(), metrics.clone());
        let skip = options.skip_if_unchanged;
        let leaves = options.source_metrics;
        let recheck = options.recheck;
        blocking(move || write_stage(&config, &metrics, skip, leaves, recheck)).await
    };
    let (hash, snapshot, synced, mut exports) = match written {
        WriteStage::Failed(e) => {
            if e.is_not_ready() {
                // The caller retries: the daemon says so once, `--once` when it gives up.
                metrics.set_source_up(false);
            } else {
                record_source_failure(&config, &e, &metrics);
            }
            return Report {
                source: SourceRead::Failed(e),
                targets: Vec::new(),
                exports: Vec::new(),
            };
        }
        WriteStage::Unchanged => {
            return Report {
                source: SourceRead::Unchanged,
                targets: Vec::new(),
                exports: Vec::new(),
            }
        }
        WriteStage::Synced {
            hash,
            snapshot,
            synced,
            exports,
        } => (hash, snapshot, synced, exports),
    };

    let mut targets = Vec::with_capacity(synced.len());
    for (target, synced) in config.targets.iter().zip(synced) {
        let reload = match &synced {
            Ok(s) if s.written.is_empty() && options.retrying.contains(&target.name) => None,
            Ok(s) => reload_target(target, s, config.dry_run, &metrics).await,
            Err(_) => None,
        };
        targets.push(TargetReport {
            name: target.name.clone(),
            synced,
            reload,
        });
    }

    for (export, report) in config.exports.iter().zip(&mut exports) {
        report.reloads = reload_export(export, report, config.dry_run, &metrics).await;
    }

    // The per-certificate metrics cost a look at every leaf: after the files and the
    // reloads, from the same read of the source.
    if let Some(snapshot) = snapshot {
        let metrics = metrics.clone();
        blocking(move || {
            if let Ok(candidates) = snapshot.candidates() {
                record_source_certificates(&metrics, &candidates);
            }
        })
        .await;
    }
    write_textfile(&config, &metrics).await;
    Report {
        source: SourceRead::Read(hash),
        targets,
        exports,
    }
}

/// `--once`: passes until the source is whole (at most [`ONCE_SOURCE_PATIENCE`]), then
/// the textfile if asked. Returns the last pass's report.
pub async fn once(config: Arc<Config>, metrics: Arc<Metrics>) -> Report {
    let mut backoff = not_ready_backoff(config.debounce, Some(ONCE_SOURCE_PATIENCE));
    // The per-certificate metrics are only read from a textfile in this mode.
    let source_metrics = config.textfile.is_some() && !config.dry_run;
    loop {
        let options = PassOptions {
            source_metrics,
            ..PassOptions::default()
        };
        let report = pass(config.clone(), metrics.clone(), options).await;
        match (&report.source, backoff.next()) {
            (SourceRead::Failed(e), Some(delay)) if e.is_not_ready() => {
                tracing::debug!(error = %Chain(e), ?delay, "source not ready, retrying");
                tokio::time::sleep(delay).await;
            }
            _ => {
                if let SourceRead::Failed(e) = &report.source {
                    if e.is_not_ready() {
                        record_source_failure(&config, e, &metrics);
                    }
                    // The textfile still tells a scraper the source is down.
                    write_textfile(&config, &metrics).await;
                }
                return report;
            }
        }
    }
}

/// Makes a target's reader load its files again: after a retry's backoff, the same
/// [`reload::Written`] as the failed attempt.
pub async fn retry_reload(
    target: &Target,
    written: reload::Written,
    metrics: &Metrics,
) -> ReloadAttempt {
    let spec = target
        .reload
        .as_ref()
        .expect("only targets with a reload are retried");
    attempt(target, spec, written, metrics).await
}

/// Backoff for a source that is not ready: from the debounce up to 2 s between reads,
/// for at most `total`.
pub fn not_ready_backoff(
    debounce: Duration,
    total: Option<Duration>,
) -> impl Iterator<Item = Duration> + Send {
    backon::ExponentialBuilder::default()
        .with_min_delay(debounce.max(Duration::from_millis(1)))
        .with_max_delay(Duration::from_secs(2))
        .with_total_delay(total)
        .without_max_times()
        .build()
}

/// Runs disk-bound work off the runtime thread. A shutdown that drops the pass does
/// not stop it: [`crate::shutdown`] waits for it, so no temporary file is left.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    let guard = crate::shutdown::in_flight();
    tokio::task::spawn_blocking(move || {
        let r = work();
        drop(guard);
        r
    })
    .await
    .expect("a pass's blocking stage panicked")
}

enum WriteStage {
    Failed(SourceError),
    Unchanged,
    Synced {
        hash: u128,
        /// Kept for the per-certificate metrics, when asked for.
        snapshot: Option<Snapshot>,
        synced: Vec<Result<Synced, TargetError>>,
        exports: Vec<crate::export::ExportReport>,
    },
}

/// Read → select/validate → write, for every target: the part of a pass that blocks.
fn write_stage(
    config: &Config,
    metrics: &Metrics,
    skip: Option<u128>,
    leaves: bool,
    recheck: bool,
) -> WriteStage {
    let mut interest = Interest::targets(
        config
            .targets
            .iter()
            .map(|t| (t.domain.as_deref(), t.resolver.as_deref())),
    )
    .with_exports(&config.exports, !recheck)
    .with_leaves(leaves)
    .with_max_size(config.max_source_size);
    let mut skip = skip;
    loop {
        let snapshot = match Snapshot::read_for(&config.source, &interest) {
            Ok(s) => s,
            Err(e) => return WriteStage::Failed(e),
        };
        let hash = snapshot.content_hash();
        if skip.take() == Some(hash) {
            return WriteStage::Unchanged;
        }
        match sync_all(config, &snapshot, metrics, recheck, interest.skips_known()) {
            Ok(Some((synced, exports))) => {
                return WriteStage::Synced {
                    hash,
                    snapshot: leaves.then_some(snapshot),
                    synced,
                    exports,
                }
            }
            // A folder changed only in part (a resolver gained a copy of a certificate):
            // it needs entries the reader dropped as known. One more read, keeping
            // them, of the source as it is now; that one cannot give up.
            Ok(None) => interest = interest.keeping_every_exported(),
            Err(e) => return WriteStage::Failed(e),
        }
    }
}

/// Each target's result and each export's report, from one read.
type SyncResults = (
    Vec<Result<Synced, TargetError>>,
    Vec<crate::export::ExportReport>,
);

/// Syncs every target and export from one read. `None` when an export needs entries
/// the reader dropped and `may_give_up`: the caller reads again keeping them.
fn sync_all(
    config: &Config,
    snapshot: &Snapshot,
    metrics: &Metrics,
    recheck: bool,
    may_give_up: bool,
) -> Result<Option<SyncResults>, SourceError> {
    let candidates = snapshot.candidates()?;
    let plans: Vec<_> = config
        .exports
        .iter()
        .map(|e| crate::export::plan(e, &candidates.list, recheck))
        .collect();
    if may_give_up && plans.iter().any(|p| p.lacks_material) {
        return Ok(None);
    }
    Ok(Some((
        sync_targets(config, &candidates, metrics),
        sync_exports(config, plans, metrics),
    )))
}

/// Syncs every target's files from parsed candidates, logging and counting one result
/// per target.
fn sync_targets(
    config: &Config,
    candidates: &Candidates<'_>,
    metrics: &Metrics,
) -> Vec<Result<Synced, TargetError>> {
    metrics.set_source_up(true);
    for s in &candidates.skipped {
        let resolver = s.resolver.as_deref().unwrap_or("-");
        warn!(source = %config.source, resolver, main = %s.main, "skipping an entry: {}", s.reason);
    }
    let now = unix_now();
    config
        .targets
        .iter()
        .map(|target| {
            let result = sync_target(target, candidates, now, config.dry_run);
            record_sync(config, target, &result, metrics, now);
            result
        })
        .collect()
}

/// Brings one target's files in line with the source. With `dry_run`, only compares
/// and reports.
fn sync_target(
    target: &Target,
    candidates: &Candidates<'_>,
    now: i64,
    dry_run: bool,
) -> Result<Synced, TargetError> {
    let domain = match &target.domain {
        Some(d) => d.clone(),
        // A certbot lineage holds one certificate: its own first name.
        None => candidates
            .list
            .first()
            .ok_or(TargetError::Empty)?
            .main
            .to_string(),
    };
    let chosen = bundle::select(&candidates.list, &domain, target.resolver.as_deref())?;
    let bundle = bundle::validate(chosen, &domain, now)?;
    let (written, repaired) = write_files(&target.out, &bundle, &domain, dry_run)?;
    let Bundle {
        leaf,
        leaf_der,
        origin,
        ..
    } = bundle;
    Ok(Synced {
        leaf: leaf.into(),
        leaf_der: leaf_der.into(),
        origin: origin.into(),
        domain: domain.into(),
        written,
        repaired,
    })
}

/// The files of `out` for `bundle`, compared with the disk and, unless `dry_run`, put
/// in place. `alias` names the key in a PKCS#12. Returns the names written and the
/// names repaired.
pub(crate) fn write_files(
    out: &crate::config::Output,
    bundle: &Bundle,
    alias: &str,
    dry_run: bool,
) -> Result<(Vec<String>, Vec<String>), TargetError> {
    let owner = match &out.owner {
        Some(spec) => spec.resolve()?,
        None => sink::Owner::default(),
    };
    let mut wanted = vec![
        Wanted {
            name: &out.cert_file,
            content: &bundle.fullchain,
            mode: out.cert_mode,
        },
        Wanted {
            name: &out.key_file,
            content: &bundle.key,
            mode: out.key_mode,
        },
    ];
    if let Some(name) = &out.leaf_file {
        wanted.push(Wanted {
            name,
            content: &bundle.leaf_pem,
            mode: out.cert_mode,
        });
    }
    if let Some(name) = &out.chain_file {
        wanted.push(Wanted {
            name,
            content: &bundle.chain_pem,
            mode: out.cert_mode,
        });
    }
    let combined;
    if let Some(name) = &out.bundle_file {
        combined = crate::formats::combined_pem(bundle);
        wanted.push(Wanted {
            name,
            content: &combined,
            mode: out.key_mode,
        });
    }
    let pkcs12;
    if let Some(p) = &out.pkcs12 {
        let password = crate::formats::read_password(&p.password_file)?;
        let existing = crate::formats::read_existing(&out.dir.join(&p.file));
        pkcs12 = crate::formats::pkcs12(
            bundle,
            alias,
            &password,
            existing.as_deref().map(|v| &v[..]),
        )?;
        wanted.push(Wanted {
            name: &p.file,
            content: &pkcs12,
            mode: out.key_mode,
        });
    }
    let plan = if out.pair_atomic {
        pair::plan(&out.dir, &wanted, owner)?
    } else {
        sink::plan(&out.dir, &wanted, owner)?
    };
    if !dry_run {
        if out.pair_atomic {
            pair::apply(&plan)?;
        } else {
            sink::apply(&plan)?;
        }
    }
    let names = |a| plan.names(a).into_iter().map(str::to_owned).collect();
    Ok((names(Action::Write), names(Action::Repair)))
}

fn record_sync(
    config: &Config,
    target: &Target,
    result: &Result<Synced, TargetError>,
    metrics: &Metrics,
    now: i64,
) {
    record_result(config.dry_run, &target.name, result, metrics, now);
}

/// Logs and counts one target's (or one exported folder's) result under `name`.
fn record_result(
    dry_run: bool,
    name: &str,
    result: &Result<Synced, TargetError>,
    metrics: &Metrics,
    now: i64,
) {
    match result {
        Ok(s) => {
            let verb = match (dry_run, s.written.is_empty()) {
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
                serial = %s.leaf.serial,
                not_after = %s.leaf.not_after_rfc3339(),
                from = %s.origin,
                "{verb} {}",
                if files.is_empty() { "nothing".to_owned() } else { files.join(", ") }
            );
            metrics.record_success(name, &s.domain, &s.leaf, s.result_label(), now);
        }
        Err(e) => {
            error!(target = name, result = "error", "{}", Chain(e));
            metrics.record_failure(name, &crate::error::chain(e));
        }
    }
}

/// Reloads a target's reader if its files changed now or a reload is still owed.
async fn reload_target(
    target: &Target,
    synced: &Synced,
    dry_run: bool,
    metrics: &Metrics,
) -> Option<ReloadAttempt> {
    let spec = target.reload.as_ref()?;
    let pending = Pending::new(&target.out.dir, &target.out.cert_file);
    if synced.written.is_empty() && !pending.is_set() {
        return None;
    }
    if dry_run {
        info!(target = %target.name, "would reload: {spec:?}");
        return None;
    }
    let written = reload::Written {
        target: target.name.clone(),
        domain: synced.domain.to_string(),
        cert_path: target.out.dir.join(&target.out.cert_file),
        key_path: target.out.dir.join(&target.out.key_file),
        leaf_der: synced.leaf_der.to_vec(),
    };
    Some(attempt(target, spec, written, metrics).await)
}

async fn attempt(
    target: &Target,
    spec: &reload::ReloadSpec,
    written: reload::Written,
    metrics: &Metrics,
) -> ReloadAttempt {
    let pending = Pending::new(&target.out.dir, &target.out.cert_file);
    attempt_with(&target.name, &pending, spec, written, metrics).await
}

/// Makes one reload, recording it as owed in `pending` until it succeeds.
async fn attempt_with(
    name: &str,
    pending: &Pending,
    spec: &reload::ReloadSpec,
    written: reload::Written,
    metrics: &Metrics,
) -> ReloadAttempt {
    if let Err(e) = pending.set() {
        warn!(target = %name, "cannot record the pending reload: {}", Chain(&e));
    }
    let result = reload::run(spec, &written).await;
    let method = spec.method.as_ref().map_or("verify", reload::Method::label);
    let error = result.as_ref().err().map(|e| crate::error::chain(e));
    if result.as_ref().is_ok_and(|r| r.restarted_for_tls) {
        // The signal that found no TLS listener, then the restart: two reloads.
        metrics.record_reload(name, method, None);
    }
    metrics.record_reload(name, method, error.as_deref());
    match &result {
        Ok(done) => {
            if let Err(e) = pending.clear() {
                warn!(target = %name, "cannot clear the pending reload: {}", Chain(&e));
            }
            info!(target = %name, method, result = "ok", restarted_for_tls = done.restarted_for_tls, "reloaded: {done}");
        }
        Err(e) => {
            error!(target = %name, method, result = "error", "reload failed, the files stay written: {}", Chain(e))
        }
    }
    ReloadAttempt { written, result }
}

/// Sets the not-after of every certificate in the source.
fn record_source_certificates(metrics: &Metrics, candidates: &Candidates<'_>) {
    metrics.set_source_certificates(crate::list::rows(candidates).into_iter().filter_map(|r| {
        let not_after = r.leaf.ok()?.not_after;
        Some((r.resolver, r.main, not_after))
    }));
}

/// A source that could not be read fails every target and every export.
pub fn record_source_failure(config: &Config, error: &SourceError, metrics: &Metrics) {
    error!(result = "error", "{}; no file was changed", Chain(error));
    metrics.set_source_up(false);
    metrics.record_source_failure(
        config
            .targets
            .iter()
            .map(|t| t.name.clone())
            .chain(config.exports.iter().map(|e| e.label.clone())),
        &crate::error::chain(error),
    );
}

/// Syncs every export's folders, logging and counting one result per folder; then
/// forgets the metrics of folders no longer exported.
fn sync_exports(
    config: &Config,
    plans: Vec<crate::export::Plan<'_, '_>>,
    metrics: &Metrics,
) -> Vec<crate::export::ExportReport> {
    if config.exports.is_empty() {
        return Vec::new();
    }
    let now = unix_now();
    let reports: Vec<_> = config
        .exports
        .iter()
        .zip(plans)
        .map(|(export, plan)| {
            let report = crate::export::sync(export, plan, now, config.dry_run);
            for f in &report.folders {
                if f.remembered {
                    metrics.record_unchanged(&f.label, now);
                } else {
                    record_result(config.dry_run, &f.label, &f.synced, metrics, now);
                }
            }
            let verb = if config.dry_run { "would remove" } else { "removed" };
            for name in &report.pruned.removed {
                info!(export = %export.label, folder = %name, "{verb} the folder of a certificate no longer exported (--prune)");
            }
            for name in &report.pruned.kept {
                warn!(export = %export.label, folder = %name, "not pruned: it holds files certsync did not write");
            }
            match &report.problem {
                Some(p) => {
                    error!(export = %export.label, result = "error", "{p}");
                    metrics.record_failure(&export.label, p);
                }
                None => metrics.set_healthy(&export.label),
            }
            report
        })
        .collect();
    let keep: Vec<String> = config
        .targets
        .iter()
        .map(|t| t.name.clone())
        .chain(config.exports.iter().map(|e| e.label.clone()))
        .chain(
            reports
                .iter()
                .flat_map(|r| r.folders.iter().map(|f| f.label.clone())),
        )
        .collect();
    metrics.retain_targets(&keep);
    reports
}

/// Reloads for an export's changed folders: the command once per changed folder (with
/// `CERTSYNC_DIR`), systemd or Docker once for the whole export. A reload owed since an
/// earlier pass (its marker set) is made again.
async fn reload_export(
    export: &crate::export::Export,
    report: &crate::export::ExportReport,
    dry_run: bool,
    metrics: &Metrics,
) -> Vec<ReloadAttempt> {
    let Some(spec) = &export.reload else {
        return Vec::new();
    };
    let out = &export.out;
    let written = |f: &crate::export::FolderReport, s: &Synced| reload::Written {
        target: f.label.clone(),
        domain: s.domain.to_string(),
        cert_path: f.dir.join(&out.cert_file),
        key_path: f.dir.join(&out.key_file),
        leaf_der: s.leaf_der.to_vec(),
    };
    // A remembered folder was not looked at: a reload it still owes is made by the
    // next pass that checks every folder.
    let due = report
        .folders
        .iter()
        .filter(|f| !f.remembered)
        .filter_map(|f| {
            let s = f.synced.as_ref().ok()?;
            (!s.written.is_empty() || Pending::new(&f.dir, &out.cert_file).is_set())
                .then_some((f, s))
        });
    let mut attempts = Vec::new();
    if let Some(reload::Method::Command(_)) = &spec.method {
        for (f, s) in due {
            if dry_run {
                info!(target = %f.label, "would reload: {spec:?}");
                continue;
            }
            let pending = Pending::new(&f.dir, &out.cert_file);
            let attempt = attempt_with(&f.label, &pending, spec, written(f, s), metrics).await;
            if attempt.result.is_err() {
                // Not trusted as done: the retry pass looks at this folder again and
                // finds the reload it owes.
                export.memo.forget(&f.label);
            }
            attempts.push(attempt);
        }
        return attempts;
    }
    // One reload for the export: its marker sits in OUT_DIR.
    let pending = Pending::new(&out.dir, &format!("export.{}", out.cert_file));
    let first = due.into_iter().next();
    let Some((f, s)) = first.or_else(|| {
        pending
            .is_set()
            .then(|| {
                report
                    .folders
                    .iter()
                    .find_map(|f| Some((f, f.synced.as_ref().ok()?)))
            })
            .flatten()
    }) else {
        return attempts;
    };
    if dry_run {
        info!(export = %export.label, "would reload: {spec:?}");
        return attempts;
    }
    let w = reload::Written {
        target: export.label.clone(),
        ..written(f, s)
    };
    attempts.push(attempt_with(&export.label, &pending, spec, w, metrics).await);
    attempts
}

/// After each pass, the metrics for node_exporter's textfile collector.
async fn write_textfile(config: &Config, metrics: &Arc<Metrics>) {
    let Some(path) = config.textfile.clone().filter(|_| !config.dry_run) else {
        return;
    };
    let metrics = metrics.clone();
    let written =
        blocking(move || crate::metrics::textfile::write(&path, &metrics.encode(unix_now()))).await;
    if let Err(e) = written {
        error!("cannot write the metrics textfile: {}", Chain(&e));
    }
}
