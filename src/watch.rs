//! The daemon: an initial pass, then a pass on every change of the source, a resync
//! pass as a safety net, retries of failed reloads, and the signals.
//!
//! A notify event is only a poke: the whole source is re-read anyway, so events carry
//! no information beyond "look now". Traefik rewrites acme.json in place, so the first
//! events of a renewal show an empty or half-written file; since a complete JSON
//! document is never the prefix of another, a file that parses is whole, and one that
//! does not is retried with backoff and on the next event. An identical rewrite (same
//! content hash) costs one read and nothing more.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use crate::cli::Cli;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pass::Synced;
use crate::source::{Interest, Snapshot, SourceError, SourceSpec};

/// Why a pass runs; only a change event may be skipped for identical content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Change,
    Retry,
    Resync,
    Reconfigure,
}

/// A reload that failed and waits for its next attempt.
struct RetryReload {
    synced: Synced,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    at: Instant,
}

/// Backoff for failed reloads: 1 s, doubling, at most 5 min apart, forever.
fn reload_backoff() -> Box<dyn Iterator<Item = Duration> + Send> {
    use backon::BackoffBuilder;
    Box::new(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(300))
            .without_max_times()
            .build(),
    )
}

struct Daemon {
    cli: Cli,
    config: Config,
    metrics: Arc<Metrics>,
    pokes: mpsc::Sender<()>,
    watcher: Option<SourceWatcher>,
    /// xxh3 of the source's content at the last pass that succeeded for every target.
    last_good: Option<u128>,
    /// Backoff while the source is half-written; `None` when it is not.
    not_ready: Option<(Box<dyn Iterator<Item = Duration> + Send>, Instant)>,
    /// Whether "the source does not exist" was already said, so it is said once.
    said_missing: bool,
    reloads: HashMap<String, RetryReload>,
}

/// Runs the daemon until `shutdown` completes. `cli` is kept to re-read the config on
/// SIGHUP.
pub async fn run(
    cli: Cli,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(config.expiry_warning, config.expiry_critical));
    metrics.expect_targets(&target_names(&config));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match config.metrics_listen {
        Some(addr) => {
            let (local, serve) = crate::metrics::http::bind(addr, metrics.clone(), async {
                let _ = http_stopped.await;
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))?;
            info!("serving /metrics and /healthz on http://{local}");
            Some(tokio::spawn(serve))
        }
        None => None,
    };

    let (pokes, mut poked) = mpsc::channel(1);
    let mut daemon = Daemon {
        watcher: None,
        cli,
        config,
        metrics,
        pokes,
        last_good: None,
        not_ready: None,
        said_missing: false,
        reloads: HashMap::new(),
    };
    daemon.watch_source();

    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut resync =
        tokio::time::interval_at(Instant::now() + daemon.config.resync, daemon.config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));

    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return finish(daemon, server, stop_http).await,
        _ = daemon.pass(Trigger::Start) => {}
    }
    // READY=1 only once the first pass is done: units ordered after certsync then find
    // their files in place.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    loop {
        let next_retry = daemon.next_retry();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = poked.recv() => daemon.pass(Trigger::Change).await,
            _ = sleep_until(next_retry.unwrap_or_else(far_future)), if next_retry.is_some() => {
                daemon.retry_due().await;
            }
            _ = resync.tick() => daemon.pass(Trigger::Resync).await,
            Some(()) = hangups.recv() => daemon.reconfigure().await,
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
    finish(daemon, server, stop_http).await
}

async fn finish(
    daemon: Daemon,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_http: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    drop(daemon);
    let _ = stop_http.send(());
    if let Some(server) = server {
        // Open keep-alive connections must not hold the exit beyond the contract's 2 s.
        let _ = tokio::time::timeout(Duration::from_millis(500), server).await;
    }
    Ok(())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// glibc keeps the heap a pass grew (tens of MB for a large acme.json's leaves) for
/// later use; between passes a daemon is idle for minutes, so it is given back.
fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only returns free memory to the OS.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Half the watchdog period systemd asked for, if it asked.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn target_names(config: &Config) -> Vec<String> {
    config.targets.iter().map(|t| t.name.clone()).collect()
}

impl Daemon {
    /// Reads the source and brings every target in line.
    async fn pass(&mut self, trigger: Trigger) {
        let config = &self.config;
        let snapshot = match Snapshot::read_for(&config.source, &crate::interest(config)) {
            Ok(s) => s,
            Err(e) => return self.source_failed(e),
        };
        let hash = snapshot.content_hash();
        if trigger == Trigger::Change && self.last_good == Some(hash) && self.not_ready.is_none() {
            debug!("source rewritten with identical content");
            return;
        }
        let candidates = match snapshot.candidates() {
            Ok(c) => c,
            Err(e) => return self.source_failed(e),
        };
        if self.not_ready.take().is_some() || self.said_missing {
            info!(source = %config.source, "source is readable again");
        }
        self.said_missing = false;
        let source_changed = self.last_good != Some(hash);
        let outcome = crate::sync_targets(config, &candidates, &self.metrics);
        drop(candidates);
        drop(snapshot);

        let all_ok = outcome.iter().all(Result::is_ok);
        for (target, result) in self.config.targets.clone().iter().zip(outcome) {
            let Ok(synced) = result else { continue };
            if synced.written.is_empty() && self.reloads.contains_key(&target.name) {
                // A retry is already scheduled; the backoff decides when.
                continue;
            }
            // New files supersede a reload still waiting for its retry.
            self.reloads.remove(&target.name);
            let retry = RetryReload {
                synced,
                delays: reload_backoff(),
                at: Instant::now(),
            };
            self.attempt_reload(target, retry).await;
        }
        // The per-certificate metrics cost a second read of every leaf: only when the
        // source changed and someone reads them, after the files and the reloads.
        let metrics_read = self.config.metrics_listen.is_some() || self.config.textfile.is_some();
        if source_changed && metrics_read {
            self.read_source_certificates();
        }
        self.last_good = all_ok.then_some(hash);
        self.write_textfile();
        release_memory();
    }

    /// Reloads a target's reader; a failure is kept, with its backoff, for a retry.
    async fn attempt_reload(&mut self, target: &crate::config::Target, mut retry: RetryReload) {
        let result =
            crate::reload_target(target, &retry.synced, self.config.dry_run, &self.metrics).await;
        if let Some(Err(_)) = result {
            let delay = retry.delays.next().unwrap_or(Duration::from_secs(300));
            retry.at = Instant::now() + delay;
            warn!(target = %target.name, "retrying the reload in {}", humantime::format_duration(delay));
            self.reloads.insert(target.name.clone(), retry);
        }
    }

    fn read_source_certificates(&self) {
        let read = Snapshot::read_for(&self.config.source, &Interest::leaves()).and_then(|s| {
            crate::record_source_certificates(&self.metrics, &s.candidates()?);
            Ok(())
        });
        if let Err(e) = read {
            // Rewritten again meanwhile: the next pass reads it.
            debug!("per-certificate metrics not updated: {e}");
        }
    }

    fn source_failed(&mut self, error: SourceError) {
        if !error.is_not_ready() {
            crate::record_source_failure(&self.config, &error, &self.metrics);
            self.last_good = None;
            self.write_textfile();
            return;
        }
        let missing = matches!(&self.config.source, SourceSpec::Acme(p) if !p.exists());
        if missing {
            // The watcher sees it appear; no timer, and one log line however long it takes.
            if !self.said_missing {
                warn!(source = %self.config.source, "waiting for the source to appear");
                self.said_missing = true;
                self.metrics.set_source_up(false);
            }
            return;
        }
        let debounce = self.config.debounce;
        let (delays, at) = self.not_ready.get_or_insert_with(|| {
            (
                Box::new(crate::not_ready_backoff(debounce, None)),
                Instant::now(),
            )
        });
        let delay = delays.next().unwrap_or(Duration::from_secs(2));
        *at = Instant::now() + delay;
        debug!(%error, ?delay, "source not ready; retrying");
    }

    fn next_retry(&self) -> Option<Instant> {
        let not_ready = self.not_ready.as_ref().map(|(_, at)| *at);
        self.reloads.values().map(|r| r.at).chain(not_ready).min()
    }

    async fn retry_due(&mut self) {
        let now = Instant::now();
        if self.not_ready.as_ref().is_some_and(|(_, at)| *at <= now) {
            self.pass(Trigger::Retry).await;
        }
        let due: Vec<String> = self
            .reloads
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(retry) = self.reloads.remove(&name) else {
                continue;
            };
            let Some(target) = self.config.targets.iter().find(|t| t.name == name).cloned() else {
                continue;
            };
            self.attempt_reload(&target, retry).await;
        }
    }

    /// SIGHUP: re-read the config file; a bad one is refused and the old one stays.
    async fn reconfigure(&mut self) {
        let Some(file) = self.config.file.clone() else {
            info!("SIGHUP: no config file to re-read; resyncing");
            return self.pass(Trigger::Resync).await;
        };
        match self.config.reload_file(&self.cli) {
            Ok(new) => {
                info!(file = %file.display(), targets = new.targets.len(), "SIGHUP: configuration re-read");
                let source_moved = new.source != self.config.source;
                self.config = new;
                let names = target_names(&self.config);
                self.metrics.retain_targets(&names);
                self.metrics.expect_targets(&names);
                self.reloads.retain(|n, _| names.contains(n));
                self.last_good = None;
                if source_moved {
                    self.watch_source();
                }
                self.pass(Trigger::Reconfigure).await;
            }
            Err(e) => {
                error!(file = %file.display(), "SIGHUP: the new configuration is refused, the old one stays in force: {e}")
            }
        }
    }

    fn watch_source(&mut self) {
        self.watcher = None;
        match SourceWatcher::new(&self.config.source, self.pokes.clone()) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                error!(source = %self.config.source, "cannot watch the source, only the resync will notice changes: {e}")
            }
        }
    }

    fn write_textfile(&self) {
        if let Some(path) = self
            .config
            .textfile
            .as_deref()
            .filter(|_| !self.config.dry_run)
        {
            if let Err(e) =
                crate::metrics::textfile::write(path, &self.metrics.encode(crate::unix_now()))
            {
                error!("cannot write the metrics textfile: {e}");
            }
        }
    }
}

/// An inotify watch on the folder holding the source: watching the folder, not the
/// file, survives in-place rewrites, replacement by rename, deletion and re-creation.
struct SourceWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl SourceWatcher {
    fn new(source: &SourceSpec, pokes: mpsc::Sender<()>) -> Result<SourceWatcher, String> {
        let (dir, names): (PathBuf, Vec<std::ffi::OsString>) = match source {
            SourceSpec::Acme(file) => {
                let dir = file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = file.file_name().ok_or("the acme.json path names no file")?;
                (dir.to_owned(), vec![name.to_owned()])
            }
            // certbot swaps the symlinks inside the lineage folder.
            SourceSpec::Certbot(dir) => (
                dir.clone(),
                vec!["fullchain.pem".into(), "privkey.pem".into()],
            ),
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let relevant = !matches!(event.kind, EventKind::Access(_))
                        && event
                            .paths
                            .iter()
                            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|w| w == n)));
                    if relevant {
                        // A full channel already holds a poke: this event is covered by it.
                        let _ = pokes.try_send(());
                    }
                }
                Err(e) => warn!("file watch error: {e}"),
            })
            .map_err(describe_notify_error)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(describe_notify_error)?;
        debug!(dir = %dir.display(), "watching");
        Ok(SourceWatcher { _watcher: watcher })
    }
}

fn describe_notify_error(e: notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "the inotify watch limit is reached (raise fs.inotify.max_user_watches)".into()
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(nix::libc::EMFILE) => {
            "too many inotify instances (raise fs.inotify.max_user_instances)".into()
        }
        _ => e.to_string(),
    }
}
