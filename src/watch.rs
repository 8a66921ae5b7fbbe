//! The daemon: an event loop around [`pipeline::pass`]. A first pass, then one on
//! every change of the source, one every `--resync` as a safety net, retries of failed
//! reloads on their backoff, SIGHUP to re-read the config, SIGTERM/SIGINT to stop.
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
use crate::error::Chain;
use crate::metrics::Metrics;
use crate::pipeline::{self, PassOptions, SourceRead};
use crate::reload;
use crate::source::{SourceError, SourceSpec};

/// Why a pass runs; only a change event may be skipped for identical content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Change,
    Retry,
    Resync,
    Reconfigure,
}

type Delays = Box<dyn Iterator<Item = Duration> + Send>;

/// Failed reloads and when each is tried again: 1 s, doubling, at most 5 min apart,
/// until one succeeds or newer files supersede it.
#[derive(Default)]
struct RetryScheduler {
    due: HashMap<String, Retry>,
}

struct Retry {
    written: reload::Written,
    delays: Delays,
    at: Instant,
}

impl RetryScheduler {
    fn backoff() -> Delays {
        use backon::BackoffBuilder;
        Box::new(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(300))
                .without_max_times()
                .build(),
        )
    }

    /// Records the outcome of an attempt: a success ends the retries, a failure is
    /// tried again after the next delay of `delays` (a retry's own backoff), or of a
    /// new backoff for a first attempt.
    fn attempted(
        &mut self,
        target: &str,
        attempt: pipeline::ReloadAttempt,
        delays: Option<Delays>,
    ) {
        self.due.remove(target);
        if attempt.result.is_ok() {
            return;
        }
        let mut delays = delays.unwrap_or_else(Self::backoff);
        let delay = delays.next().unwrap_or(Duration::from_secs(300));
        warn!(
            target,
            "retrying the reload in {}",
            humantime::format_duration(delay)
        );
        self.due.insert(
            target.to_owned(),
            Retry {
                written: attempt.written,
                delays,
                at: Instant::now() + delay,
            },
        );
    }

    fn next(&self) -> Option<Instant> {
        self.due.values().map(|r| r.at).min()
    }

    /// The retries whose time has come, taken out of the schedule.
    fn take_due(&mut self, now: Instant) -> Vec<(String, Retry)> {
        let names: Vec<String> = self
            .due
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|n| self.due.remove(&n).map(|r| (n, r)))
            .collect()
    }
}

/// Backoff while the source is half-written.
struct NotReady {
    delays: Delays,
    at: Instant,
    /// When the source was first seen not ready, to tell a write in progress from a
    /// pair that will never match.
    since: Instant,
    /// Whether the lasting failure was already recorded.
    reported: bool,
}

/// When a failed pass is tried again: the fault (a full disk, a deleted group) goes
/// away without an event in the source.
struct Failing {
    delays: Delays,
    at: Instant,
}

/// A source not ready for this long is failing, not being written: a key that still
/// does not match its certificate is a broken pair. It is then logged and shown in
/// /healthz and the metrics as a failure of every target, and still retried.
const NOT_READY_FOR_TOO_LONG: Duration = Duration::from_secs(10);

struct Daemon {
    cli: Cli,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    pokes: mpsc::Sender<()>,
    watcher: Option<SourceWatcher>,
    /// xxh3 of the source's content at the last pass that succeeded for every target.
    last_good: Option<u128>,
    not_ready: Option<NotReady>,
    /// Backoff while some target failed (a full or read-only out dir, a deleted group):
    /// the fault goes away without an event in the source, so passes are retried.
    failing: Option<Failing>,
    /// Whether "the source does not exist" was already said, so it is said once.
    said_missing: bool,
    retries: RetryScheduler,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    cli: Cli,
    config: Config,
    watchdog: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
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
        failing: None,
        said_missing: false,
        retries: RetryScheduler::default(),
    };
    daemon.watch_source();

    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let every = daemon.config.resync;
    let mut resync = tokio::time::interval_at(Instant::now() + every, every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The config check refused a period under 1 ms; an hour stands in when there is none.
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));

    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return finish(server, stop_http).await,
        _ = daemon.pass(Trigger::Start) => {}
    }
    // READY=1 only once the first pass is done: units ordered after certsync then find
    // their files in place.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    loop {
        let next = daemon.next_timer();
        // Each arm's work is inside the select, so a shutdown abandons it mid-way.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(()) = poked.recv() => {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = daemon.pass(Trigger::Change) => {}
                }
            }
            _ = sleep_until(next.unwrap_or_else(far_future)), if next.is_some() => {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = daemon.timers_due() => {}
                }
            }
            _ = resync.tick() => {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = daemon.pass(Trigger::Resync) => {}
                }
            }
            Some(()) = hangups.recv() => {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = daemon.reconfigure() => {}
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
    drop(daemon);
    finish(server, stop_http).await
}

async fn finish(
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_http: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if !crate::shutdown::drain(Duration::from_millis(1200)).await {
        warn!("a file write is still running; exiting without waiting for it");
    }
    let _ = stop_http.send(());
    if let Some(server) = server {
        // Open keep-alive connections must not hold the exit beyond the contract's 2 s.
        let _ = tokio::time::timeout(Duration::from_millis(300), server).await;
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

fn target_names(config: &Config) -> Vec<String> {
    config.targets.iter().map(|t| t.name.clone()).collect()
}

impl Daemon {
    /// Reads the source and brings every target in line.
    async fn pass(&mut self, trigger: Trigger) {
        // A swapped link (a Kubernetes volume's `..data`) leads to another folder.
        if self
            .watcher
            .as_ref()
            .is_some_and(|w| w.moved(&self.config.source))
        {
            debug!(source = %self.config.source, "the source's links moved; watching anew");
            self.watch_source();
        }
        let options = PassOptions {
            skip_if_unchanged: self
                .last_good
                .filter(|_| trigger == Trigger::Change && self.not_ready.is_none()),
            retrying: self.retries.due.keys().cloned().collect(),
            source_metrics: self.config.metrics_listen.is_some() || self.config.textfile.is_some(),
            recheck: !matches!(trigger, Trigger::Change | Trigger::Retry),
        };
        let report = pipeline::pass(self.config.clone(), self.metrics.clone(), options).await;
        let hash = match report.source {
            SourceRead::Unchanged => return debug!("source rewritten with identical content"),
            SourceRead::Failed(e) => return self.source_failed(e),
            SourceRead::Read(hash) => hash,
        };
        if self.not_ready.take().is_some() || self.said_missing {
            info!(source = %self.config.source, "source is readable again");
        }
        self.said_missing = false;
        if self.watcher.is_none() {
            // The watch failed at start (the storage or the Secret's folder did not
            // exist yet): now that the source reads, it can be watched. A change
            // between this pass's read and the new watch would go unseen, so one more
            // look (cheap: unchanged content stops at its hash).
            self.watch_source();
            if self.watcher.is_some() {
                let _ = self.pokes.try_send(());
            }
        }
        // A target's failed reload has its own retry (below); an export's folders and
        // reloads are retried by passing again.
        let all_ok = report.targets.iter().all(|t| t.synced.is_ok())
            && report
                .exports
                .iter()
                .all(crate::export::ExportReport::all_ok);
        for t in report.targets {
            // An attempt in a pass is for new files (which supersede a reload still
            // waiting for its retry) or for a reload owed since an earlier run.
            if let Some(attempt) = t.reload {
                self.retries.attempted(&t.name, attempt, None);
            }
        }
        self.last_good = all_ok.then_some(hash);
        if all_ok {
            self.failing = None;
        } else if self.failing.is_none() {
            let mut delays = RetryScheduler::backoff();
            let delay = delays.next().unwrap_or(Duration::from_secs(300));
            debug!(?delay, "a target failed; passing again");
            self.failing = Some(Failing {
                delays,
                at: Instant::now() + delay,
            });
        }
        release_memory();
    }

    fn source_failed(&mut self, error: SourceError) {
        if !error.is_not_ready() {
            self.last_good = None;
            return;
        }
        let missing = matches!(&self.config.source, SourceSpec::Acme(p) if !p.exists());
        if missing {
            // The watcher sees it appear; no timer, and one log line however long it takes.
            if !self.said_missing {
                warn!(source = %self.config.source, "waiting for the source to appear");
                self.said_missing = true;
            }
            return;
        }
        let debounce = self.config.debounce;
        let state = self.not_ready.get_or_insert_with(|| NotReady {
            delays: Box::new(pipeline::not_ready_backoff(debounce, None)),
            at: Instant::now(),
            since: Instant::now(),
            reported: false,
        });
        if !state.reported && state.since.elapsed() >= NOT_READY_FOR_TOO_LONG {
            state.reported = true;
            pipeline::record_source_failure(&self.config, &error, &self.metrics);
        }
        let delay = state.delays.next().unwrap_or(Duration::from_secs(2));
        state.at = Instant::now() + delay;
        debug!(error = %Chain(&error), ?delay, "source not ready; retrying");
    }

    fn next_timer(&self) -> Option<Instant> {
        let not_ready = self.not_ready.as_ref().map(|n| n.at);
        let failing = self.failing.as_ref().map(|n| n.at);
        self.retries
            .next()
            .into_iter()
            .chain(not_ready)
            .chain(failing)
            .min()
    }

    async fn timers_due(&mut self) {
        let now = Instant::now();
        if self.not_ready.as_ref().is_some_and(|n| n.at <= now) {
            self.pass(Trigger::Retry).await;
        }
        if let Some(failing) = self.failing.as_mut().filter(|f| f.at <= now) {
            // The next try is set before this one, which clears it if all goes well.
            failing.at = now + failing.delays.next().unwrap_or(Duration::from_secs(300));
            self.pass(Trigger::Retry).await;
        }
        for (name, retry) in self.retries.take_due(now) {
            let Some(target) = self.config.targets.iter().find(|t| t.name == name) else {
                continue;
            };
            let attempt = pipeline::retry_reload(target, retry.written, &self.metrics).await;
            self.retries.attempted(&name, attempt, Some(retry.delays));
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
                self.config = Arc::new(new);
                let names = target_names(&self.config);
                self.metrics.retain_targets(&names);
                self.metrics.expect_targets(&names);
                self.retries.due.retain(|n, _| names.contains(n));
                self.last_good = None;
                if source_moved {
                    self.watch_source();
                }
                self.pass(Trigger::Reconfigure).await;
            }
            Err(e) => {
                error!(file = %file.display(), "SIGHUP: the new configuration is refused, the old one stays in force: {}", Chain(&e))
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
}

/// An inotify watch on the folder holding the source: watching the folder, not the
/// file, survives in-place rewrites, replacement by rename, deletion and re-creation.
///
/// An acme.json reached through symlinks (a Kubernetes volume: `acme.json` ->
/// `..data/acme.json`, `..data` -> `..2026_11_23...`) is rewritten in the folder the
/// links lead to, and renewed by swapping a link: every folder on the way is watched,
/// for the names on the way, and [`SourceWatcher::moved`] tells when a link now leads
/// elsewhere, so the daemon watches anew.
struct SourceWatcher {
    _watcher: notify::RecommendedWatcher,
    /// The `(folder, name)` hops the source path resolved through when watched.
    hops: Vec<(PathBuf, std::ffi::OsString)>,
}

/// Which events under a watched folder are a change of the source.
enum Relevant {
    /// A file of one of these names in a watched folder.
    Names(Vec<std::ffi::OsString>),
    /// Anything under this folder (Caddy's `certificates/`).
    Under(PathBuf),
}

impl Relevant {
    fn matches(&self, path: &Path) -> bool {
        match self {
            Relevant::Names(names) => path
                .file_name()
                .is_some_and(|n| names.iter().any(|w| w == n)),
            Relevant::Under(dir) => path.starts_with(dir),
        }
    }
}

impl SourceWatcher {
    fn new(source: &SourceSpec, pokes: mpsc::Sender<()>) -> Result<SourceWatcher, String> {
        let folder_of = |file: &Path| {
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        };
        let file_name = |file: &Path| {
            file.file_name()
                .map(|n| n.to_owned())
                .ok_or_else(|| format!("{} names no file", file.display()))
        };
        let mut hops = Vec::new();
        // (folders, recursive, what counts)
        let (dirs, mode, relevant): (Vec<PathBuf>, RecursiveMode, Relevant) = match source {
            SourceSpec::Acme(file) => {
                file_name(file)?;
                hops = resolution_hops(file);
                let mut dirs: Vec<PathBuf> = hops.iter().map(|(d, _)| d.clone()).collect();
                dirs.dedup();
                let names = hops.iter().map(|(_, n)| n.clone()).collect();
                (dirs, RecursiveMode::NonRecursive, Relevant::Names(names))
            }
            // certbot swaps the symlinks inside the lineage folder.
            SourceSpec::Certbot(dir) => (
                vec![dir.clone()],
                RecursiveMode::NonRecursive,
                Relevant::Names(vec!["fullchain.pem".into(), "privkey.pem".into()]),
            ),
            // The kubelet's swap is a rename of `..data_tmp` onto `..data` in the folder
            // of both links: `..data` is the one name of it that matters, so a swap is
            // one poke and one pass (the new folder and the removal of the old one are
            // named otherwise).
            SourceSpec::Pem { cert, key } => {
                let mut dirs = vec![folder_of(cert)];
                if folder_of(key) != dirs[0] {
                    dirs.push(folder_of(key));
                }
                (
                    dirs,
                    RecursiveMode::NonRecursive,
                    Relevant::Names(vec![file_name(cert)?, file_name(key)?, "..data".into()]),
                )
            }
            // Recursive: notify adds a watch for each new issuer and name folder as it
            // appears. Caddy's `locks/` and `acme/` churn during a renewal and are not
            // the certificates.
            SourceSpec::Caddy(dir) => (
                vec![dir.clone()],
                RecursiveMode::Recursive,
                Relevant::Under(dir.join("certificates")),
            ),
        };
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                // A rename also comes as `To` (the new name); its `Both` twin would
                // poke a second pass for the same kubelet swap or certbot link swap.
                let twin = matches!(
                    event.kind,
                    EventKind::Modify(notify::event::ModifyKind::Name(
                        notify::event::RenameMode::Both
                    ))
                );
                if !twin
                    && !matches!(event.kind, EventKind::Access(_))
                    && event.paths.iter().any(|p| relevant.matches(p))
                {
                    // A full channel already holds a poke: this event is covered by it.
                    let _ = pokes.try_send(());
                }
            }
            Err(e) => warn!("file watch error: {e}"),
        };
        // A recursive watch must not follow a symlink planted in the storage out of it.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher =
            notify::RecommendedWatcher::new(handler, config).map_err(describe_notify_error)?;
        for (i, dir) in dirs.iter().enumerate() {
            match watcher.watch(dir, mode) {
                Ok(()) => debug!(dir = ?dir.display(), "watching"),
                // The source's own folder must be watchable; a folder a link leads
                // to may be gone already (a swap mid-way), and is looked at again.
                Err(e) if i == 0 => return Err(describe_notify_error(e)),
                Err(e) => debug!(dir = ?dir.display(), "cannot watch: {e}"),
            }
        }
        Ok(SourceWatcher {
            _watcher: watcher,
            hops,
        })
    }

    /// Whether the source's links now lead somewhere else than when it was watched.
    fn moved(&self, source: &SourceSpec) -> bool {
        match source {
            SourceSpec::Acme(file) => resolution_hops(file) != self.hops,
            SourceSpec::Certbot(_) | SourceSpec::Pem { .. } | SourceSpec::Caddy(_) => false,
        }
    }
}

/// `(folder, name)` of `path` and of every symlink met while resolving it, in order:
/// the folders to watch and the names whose change matters. A loop or a missing part
/// ends the walk where it is.
fn resolution_hops(path: &Path) -> Vec<(PathBuf, std::ffi::OsString)> {
    let split = |p: &Path| -> Option<(PathBuf, std::ffi::OsString)> {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        Some((
            dir.unwrap_or(Path::new(".")).to_owned(),
            p.file_name()?.to_owned(),
        ))
    };
    let mut hops: Vec<(PathBuf, std::ffi::OsString)> = split(path).into_iter().collect();
    let mut current = path.to_owned();
    // As the kernel does (MAXSYMLINKS): past 40 links, it is a loop.
    for _ in 0..40 {
        let mut prefix = PathBuf::new();
        let mut link = None;
        for part in current.components() {
            prefix.push(part);
            if std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink()) {
                link = Some(prefix.clone());
                break;
            }
        }
        let Some(link) = link else { break };
        let Ok(target) = std::fs::read_link(&link) else {
            break;
        };
        let rest = current
            .strip_prefix(&link)
            .unwrap_or(Path::new(""))
            .to_owned();
        let base = link.parent().unwrap_or(Path::new("/"));
        current = base.join(target);
        if !rest.as_os_str().is_empty() {
            current.push(rest);
        }
        hops.extend(split(&link));
        hops.extend(split(&current));
    }
    let mut seen = std::collections::HashSet::new();
    hops.retain(|h| seen.insert(h.clone()));
    hops
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
