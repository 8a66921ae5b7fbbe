//! Making the server load the files just written: through systemd, the Docker Engine
//! or a command, then (optionally) checking that it now serves them.
//!
//! `signal` mode is the default because coturn re-reads its certificate on SIGUSR2
//! without dropping a relayed call; `restart` drops every call and is there for servers
//! that cannot reload.

pub mod command;
pub mod docker;
pub mod procfs;
pub mod systemd;

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::cli::ReloadArgs;
use crate::config::ConfigError;
use crate::verify::{self, VerifyError};

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
    #[error("systemd: {0}")]
    Systemd(String),
    #[error("docker: {0}")]
    Docker(String),
    #[error("reload command: {0}")]
    Command(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
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

/// Makes the target's reader load the new files, then checks that it serves them.
/// Returns what was done, for the log.
pub async fn run(spec: &ReloadSpec, written: &Written) -> Result<String, ReloadError> {
    let started = std::time::Instant::now();
    let outcome = match &spec.method {
        None => Outcome::Reloaded(String::new()),
        Some(Method::Systemd { unit, bus }) => {
            systemd::reload(unit, *bus, spec.mode, spec.signal).await?
        }
        Some(Method::DockerContainer(name)) => {
            let selector = docker::Selector::Container(name.clone());
            docker::reload(&selector, spec.mode, spec.signal).await?
        }
        Some(Method::DockerLabel { key, value }) => {
            let selector = docker::Selector::Label {
                key: key.clone(),
                value: value.clone(),
            };
            docker::reload(&selector, spec.mode, spec.signal).await?
        }
        Some(Method::Command(cmd)) => Outcome::Reloaded(command::reload(cmd, written).await?),
    };
    let (mut done, running) = match outcome {
        Outcome::Reloaded(m) => (m, true),
        Outcome::NothingRunning(m) => (m, false),
    };
    if let Some(v) = &spec.verify {
        if !done.is_empty() {
            done.push_str("; ");
        }
        if running {
            let reloaded_in = started.elapsed();
            let verified_in =
                verify::wait_for_leaf(&v.addr, &written.domain, &written.leaf_der, v.timeout)
                    .await?;
            done.push_str(&format!(
                "{} serves the new certificate {} ms after the reload began (reload {} ms, verify {} ms)",
                v.addr,
                started.elapsed().as_millis(),
                reloaded_in.as_millis(),
                verified_in.as_millis()
            ));
        } else {
            done.push_str(&format!("{} not verified: nothing is running", v.addr));
        }
    }
    Ok(done)
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
    Systemd { unit: String, bus: Bus },
    DockerContainer(String),
    DockerLabel { key: String, value: String },
    Command(String),
}

impl Method {
    /// The `method` label of `certsync_reload_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Systemd { .. } => "systemd",
            Method::DockerContainer(_) | Method::DockerLabel { .. } => "docker",
            Method::Command(_) => "command",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    System,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Signal,
    Restart,
}

/// Where to check that the new leaf is served, and for how long to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    pub addr: String,
    pub timeout: Duration,
}

/// A reload owed to a target, recorded next to its files. It is set before the first
/// attempt and cleared on success, so a reload that failed (or a certsync that died
/// between writing and reloading) is still done by the next pass or the next
/// `--once`, although the files themselves are then unchanged.
pub struct Pending {
    path: PathBuf,
}

impl Pending {
    pub fn for_target(out: &crate::config::Output) -> Pending {
        Pending {
            path: out
                .dir
                .join(format!(".certsync-reload-pending.{}", out.cert_file)),
        }
    }

    pub fn is_set(&self) -> bool {
        self.path.exists()
    }

    pub fn set(&self) -> std::io::Result<()> {
        std::fs::write(&self.path, b"")
    }

    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The `[target.reload]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub systemd_unit: Option<String>,
    pub bus: Option<String>,
    pub docker_container: Option<String>,
    pub docker_label: Option<String>,
    pub command: Option<String>,
    pub mode: Option<String>,
    pub signal: Option<String>,
    pub verify_tls: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub verify_timeout: Option<Duration>,
}

impl ReloadSpec {
    /// The reload settings given as flags, if any.
    pub fn from_args(a: &ReloadArgs) -> Result<Option<ReloadSpec>, ConfigError> {
        let raw = RawReload {
            systemd_unit: a.systemd_unit.clone(),
            bus: a.systemd_bus.clone(),
            docker_container: a.docker_container.clone(),
            docker_label: a.docker_label.clone(),
            command: a.reload_command.clone(),
            mode: a.reload_mode.clone(),
            signal: a.reload_signal.clone(),
            verify_tls: a.verify_tls.clone(),
            verify_timeout: a.verify_timeout,
        };
        let any_method = raw.systemd_unit.is_some()
            || raw.docker_container.is_some()
            || raw.docker_label.is_some()
            || raw.command.is_some()
            || raw.verify_tls.is_some();
        if !any_method {
            let stray = [
                ("--systemd-bus", &raw.bus),
                ("--reload-mode", &raw.mode),
                ("--reload-signal", &raw.signal),
            ]
            .into_iter()
            .find(|(_, v)| v.is_some());
            return match stray {
                Some((flag, _)) => Err(ConfigError(format!(
                    "{flag} needs a reload method: --systemd-unit, --docker-container, --docker-label or --reload-command"
                ))),
                None => Ok(None),
            };
        }
        raw.build().map(Some)
    }
}

impl RawReload {
    pub fn build(self) -> Result<ReloadSpec, ConfigError> {
        let e = |m: String| ConfigError(m);
        let mut methods = Vec::new();
        if let Some(unit) = self.systemd_unit {
            let bus = match self.bus.as_deref().unwrap_or("system") {
                "system" => Bus::System,
                "user" => Bus::User,
                other => {
                    return Err(e(format!(
                        "systemd bus {other:?} is neither 'system' nor 'user'"
                    )))
                }
            };
            methods.push(Method::Systemd { unit, bus });
        } else if self.bus.is_some() {
            return Err(e("a systemd bus is set without a systemd unit".into()));
        }
        if let Some(c) = self.docker_container {
            methods.push(Method::DockerContainer(c));
        }
        if let Some(l) = self.docker_label {
            let (key, value) = l
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| e(format!("docker label {l:?} is not KEY=VALUE")))?;
            methods.push(Method::DockerLabel {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        if let Some(c) = self.command {
            methods.push(Method::Command(c));
        }
        if methods.len() > 1 {
            return Err(e("at most one reload method per target: systemd unit, docker container, docker label or command".into()));
        }
        let mode = match self.mode.as_deref().unwrap_or("signal") {
            "signal" => Mode::Signal,
            "restart" => Mode::Restart,
            other => {
                return Err(e(format!(
                    "reload mode {other:?} is neither 'signal' nor 'restart'"
                )))
            }
        };
        let signal = parse_signal(self.signal.as_deref().unwrap_or("SIGUSR2"))?;
        let verify = match self.verify_tls {
            None => None,
            Some(addr) => {
                if addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(e(format!("verify address {addr:?} is not HOST:PORT")));
                }
                Some(Verify {
                    addr,
                    timeout: self.verify_timeout.unwrap_or(Duration::from_secs(10)),
                })
            }
        };
        Ok(ReloadSpec {
            method: methods.pop(),
            mode,
            signal,
            verify,
        })
    }
}

fn parse_signal(s: &str) -> Result<Signal, ConfigError> {
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
        .map_err(|_| ConfigError(format!("{s:?} is not a signal name such as SIGUSR2")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_signal_mode_with_sigusr2() {
        let spec = RawReload {
            systemd_unit: Some("coturn.service".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(spec.mode, Mode::Signal);
        assert_eq!(spec.signal, Signal::SIGUSR2);
        assert_eq!(
            spec.method,
            Some(Method::Systemd {
                unit: "coturn.service".into(),
                bus: Bus::System
            })
        );
    }

    #[test]
    fn one_method_per_target_and_labels_are_key_value() {
        let two = RawReload {
            systemd_unit: Some("a".into()),
            command: Some("true".into()),
            ..Default::default()
        };
        assert!(two.build().is_err());
        let bad = RawReload {
            docker_label: Some("nolabel".into()),
            ..Default::default()
        };
        assert!(bad.build().is_err());
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("12").unwrap(), Signal::SIGUSR2);
    }
}
