//! Making the server load the files just written: through systemd, the Docker Engine,
//! a signal to a process found through /proc (a PID file or an executable name), or a
//! command; then (optionally) checking that it now serves them.
//!
//! `signal` mode is the default because coturn re-reads its certificate on SIGUSR2
//! without dropping a relayed call; `restart` drops every call and is there for servers
//! that cannot reload. The one exception is a first start: a coturn started before its
//! files existed has no TLS listener for a signal to refresh, so when the verify finds
//! nothing listening, the unit or container is restarted once.

pub mod command;
pub mod docker;
pub mod pending;
pub mod procfs;
pub mod signal;
pub mod systemd;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::verify::{self, OnRefused, VerifyError};

/// What a reload needs to know about the files just written.
#[derive(Debug, Clone)]
pub struct Written {
    pub target: String,
    /// The domain the leaf was chosen for: SNI for the probe, `CERTSYNC_DOMAIN` for a command.
    pub domain: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// DER of the leaf just written, to recognise it when served.
    pub leaf_der: Vec<u8>,
}

/// Why a reload failed. The files stay written; the reload is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    #[error(transparent)]
    Command(#[from] command::CommandError),
    #[error(transparent)]
    Signal(#[from] signal::SignalError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Signal mode found no TLS listener, restarted the reader, and the restart failed.
    #[error("nothing listened on {addr} after the signal, so a restart was tried: it failed")]
    RestartForTls {
        addr: String,
        #[source]
        source: Box<ReloadError>,
    },
}

/// What a reload method did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The reader was signalled, restarted, or the command ran.
    Reloaded(String),
    /// Nothing runs that could serve the old files (signal mode, or no container with
    /// the label): not an error, and there is nothing to verify.
    NothingRunning(String),
}

/// What a successful reload did, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was done, in words.
    pub done: String,
    /// Signal mode found nothing listening on the verify address (a server that
    /// started before its files existed and opened no TLS listener, as coturn does),
    /// so the unit or container was restarted once: a second reload to count.
    pub restarted_for_tls: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.done)
    }
}

/// How long a verify in signal mode waits while every connection is refused before it
/// concludes that the server has no TLS listener and restarts it. A server that was
/// signalled is running and keeps its listeners across the reload, so a refusal lasting
/// this long means there is none.
pub const REFUSED_GRACE: Duration = Duration::from_secs(1);

/// (target, verify address) of servers that were restarted because nothing listened,
/// and still had no listener after the restart: a wrong `--verify-tls` port, or TLS
/// off in the server's own configuration. A restart drops every call, and failed
/// reloads are retried, so such a server is not restarted again until a verify of
/// that target succeeds.
static RESTART_DID_NOT_HELP: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

fn restart_did_not_help(key: &(String, String)) -> bool {
    RESTART_DID_NOT_HELP
        .lock()
        .is_ok_and(|set| set.contains(key))
}

fn remember_restart_did_not_help(key: (String, String), did_not: bool) {
    if let Ok(mut set) = RESTART_DID_NOT_HELP.lock() {
        if did_not {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }
}

/// Makes the target's reader load the new files, then checks that it serves them.
///
/// Cancel-safe: dropping the future abandons the reload. A running reload command is
/// killed with its whole process group; a D-Bus or Docker call is dropped (what the
/// manager or engine already started, it finishes on its own).
pub async fn run(spec: &ReloadSpec, written: &Written) -> Result<Report, ReloadError> {
    let started = Instant::now();
    let outcome = reload_once(spec, spec.mode, written).await?;
    let (mut done, running) = match outcome {
        Outcome::Reloaded(m) => (m, true),
        Outcome::NothingRunning(m) => (m, false),
    };
    let mut restarted_for_tls = false;
    if let Some(v) = &spec.verify {
        if !done.is_empty() {
            done.push_str("; ");
        }
        if !running {
            done.push_str(&format!("{} not verified: nothing is running", v.addr));
            return Ok(Report {
                done,
                restarted_for_tls,
            });
        }
        let key = (written.target.clone(), v.addr.clone());
        let may_restart = spec.can_restart_for_tls() && !restart_did_not_help(&key);
        if spec.can_restart_for_tls() && !may_restart {
            tracing::warn!(
                target = %written.target,
                "nothing listened on {} after the last restart either: not restarting again \
                 (check --verify-tls and the server's TLS settings)",
                v.addr
            );
        }
        let verify = |on_refused| {
            verify::wait_for_leaf(
                &v.addr,
                &written.domain,
                &written.leaf_der,
                v.timeout,
                on_refused,
            )
        };
        let reloaded_in = started.elapsed();
        let on_refused = if may_restart {
            OnRefused::GiveUpAfter(REFUSED_GRACE)
        } else {
            OnRefused::KeepTrying
        };
        let timing = match verify(on_refused).await {
            Ok(verified_in) => format!(
                "reload {} ms, verify {} ms",
                reloaded_in.as_millis(),
                verified_in.as_millis()
            ),
            Err(e) if e.is_nothing_listening() => {
                tracing::warn!(
                    target = %written.target,
                    "nothing listens on {}: the server started without its TLS files; restarting it once",
                    v.addr
                );
                let refused_for = started.elapsed() - reloaded_in;
                let restart_began = Instant::now();
                let restarted =
                    reload_once(spec, Mode::Restart, written)
                        .await
                        .map_err(|source| ReloadError::RestartForTls {
                            addr: v.addr.clone(),
                            source: Box::new(source),
                        })?;
                let restarted_in = restart_began.elapsed();
                restarted_for_tls = true;
                let (Outcome::Reloaded(m) | Outcome::NothingRunning(m)) = restarted;
                done.push_str(&format!(
                    "nothing listened on {} (TLS off since the server started without its files), so: {m}; ",
                    v.addr
                ));
                let verified = verify(OnRefused::KeepTrying).await;
                remember_restart_did_not_help(key, matches!(&verified, Err(e) if e.last_refused()));
                format!(
                    "signal {} ms, refused for {} ms, restart {} ms, verify {} ms",
                    reloaded_in.as_millis(),
                    refused_for.as_millis(),
                    restarted_in.as_millis(),
                    verified?.as_millis()
                )
            }
            Err(e) => return Err(e.into()),
        };
        done.push_str(&format!(
            "{} serves the new certificate {} ms after the reload began ({timing})",
            v.addr,
            started.elapsed().as_millis(),
        ));
    }
    Ok(Report {
        done,
        restarted_for_tls,
    })
}

/// One reload by the spec's method, in `mode`.
async fn reload_once(
    spec: &ReloadSpec,
    mode: Mode,
    written: &Written,
) -> Result<Outcome, ReloadError> {
    Ok(match &spec.method {
        None => Outcome::Reloaded(String::new()),
        Some(Method::Systemd { unit, bus }) => {
            systemd::reload(unit, *bus, mode, spec.signal).await?
        }
        Some(Method::DockerContainer(name)) => {
            let selector = docker::Selector::Container(name.clone());
            docker::reload(&selector, mode, spec.signal).await?
        }
        Some(Method::DockerLabel { key, value }) => {
            let selector = docker::Selector::Label {
                key: key.clone(),
                value: value.clone(),
            };
            docker::reload(&selector, mode, spec.signal).await?
        }
        Some(Method::Command(cmd)) => Outcome::Reloaded(command::reload(cmd, written).await?),
        Some(Method::SignalPidFile(path)) => signal::pid_file(path, spec.signal).await?,
        Some(Method::SignalProcess(name)) => signal::process(name, spec.signal).await?,
    })
}

/// How one target's reader is told about new files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSpec {
    /// `None` when only `verify_tls` is set (a server that watches its files itself).
    pub method: Option<Method>,
    pub mode: Mode,
    pub signal: Signal,
    pub verify: Option<Verify>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Systemd {
        unit: String,
        bus: Bus,
    },
    DockerContainer(String),
    DockerLabel {
        key: String,
        value: String,
    },
    Command(String),
    /// The process whose PID is in this file (coturn's `pidfile=`).
    SignalPidFile(PathBuf),
    /// Every process of this executable name visible in /proc.
    SignalProcess(String),
}

impl Method {
    /// The `method` label of `certsync_reload_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Systemd { .. } => "systemd",
            Method::DockerContainer(_) | Method::DockerLabel { .. } => "docker",
            Method::Command(_) => "command",
            Method::SignalPidFile(_) | Method::SignalProcess(_) => "signal",
        }
    }
}

impl ReloadSpec {
    /// Whether signal mode can fall back to one restart when the verify finds nothing
    /// listening: only systemd and Docker know how to restart the reader.
    fn can_restart_for_tls(&self) -> bool {
        self.mode == Mode::Signal
            && matches!(
                self.method,
                Some(
                    Method::Systemd { .. }
                        | Method::DockerContainer(_)
                        | Method::DockerLabel { .. }
                )
            )
    }
}

/// Which systemd manager: the machine's, or the user's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    #[default]
    System,
    User,
}

/// How a reader is made to load new files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Signal,
    Restart,
}

/// Where to check that the new leaf is served, and for how long to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    pub addr: String,
    pub timeout: Duration,
}

/// A signal by name (`SIGUSR2`, `usr2`) or number, for flags and the TOML file.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .or_else(|_| {
            s.parse::<i32>()
                .map_err(|_| ())
                .and_then(|n| Signal::try_from(n).map_err(|_| ()))
        })
        .map_err(|_| format!("{s:?} is not a signal name such as SIGUSR2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("SIGUSR2").unwrap(), Signal::SIGUSR2);
        assert_eq!(parse_signal("12").unwrap(), Signal::SIGUSR2);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn signal_mode_restarts_for_tls_only_through_systemd_or_docker() {
        let spec = |method: Method, mode: &str| ReloadSpec {
            method: Some(method),
            mode: if mode == "signal" {
                Mode::Signal
            } else {
                Mode::Restart
            },
            signal: Signal::SIGUSR2,
            verify: None,
        };
        let unit = Method::Systemd {
            unit: "coturn.service".into(),
            bus: Bus::System,
        };
        assert!(spec(unit.clone(), "signal").can_restart_for_tls());
        assert!(!spec(unit, "restart").can_restart_for_tls());
        assert!(spec(Method::DockerContainer("c".into()), "signal").can_restart_for_tls());
        assert!(!spec(Method::Command("true".into()), "signal").can_restart_for_tls());
        assert!(!spec(Method::SignalProcess("turnserver".into()), "signal").can_restart_for_tls());
    }
}
