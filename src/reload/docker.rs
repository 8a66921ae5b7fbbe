//! Reload through the Docker Engine API, with bollard.
//!
//! The engine is found as the docker CLI finds it: `DOCKER_HOST` (`unix://…`, or
//! `tcp://…` for a docker-socket-proxy), else `/var/run/docker.sock`. The API version
//! is negotiated, so older engines work too. Every call has a timeout.
//!
//! * One container (`--docker-container`): inspected first. In `signal` mode a
//!   container that is not running is left alone (it reads the new files when it
//!   starts); a running one is killed with the signal. In `restart` mode it is
//!   restarted (which also starts a stopped one, like systemd's RestartUnit).
//! * A label (`--docker-label`): every *running* container with that label, except
//!   compose one-off containers (`com.docker.compose.oneoff=True`: `docker compose
//!   run` shells and jobs, which are not the server). They are handled one after the
//!   other (a rolling restart in `restart` mode). None running is not an error in
//!   either mode: nothing serves the old certificate, and whatever starts later reads
//!   the new files. `restart` mode does not start stopped containers: the operator
//!   stopped them.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, RestartContainerOptions,
};
use bollard::Docker;
use nix::sys::signal::Signal;

use super::{procfs, Mode, Outcome};

/// One API call (connect, version, inspect, list, kill).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A restart: the container's stop timeout (10 s unless set) plus its start.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// The label compose puts on `docker compose run` containers.
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";

/// Why a reload through the Docker Engine API failed. Each names the engine's address
/// and the container or label it is about.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine was not reached at all (no socket, connection refused, TLS, ...).
    #[error("docker: cannot reach the Docker Engine API at {address} ({what})")]
    Unreachable {
        address: String,
        what: String,
        #[source]
        source: BollardError,
    },
    /// The engine answered with an error status. `hint` says what to check.
    #[error("docker: {what}: the engine at {address} refused{hint}")]
    Refused {
        address: String,
        what: String,
        hint: &'static str,
        #[source]
        source: BollardError,
    },
    /// Something answered, but not as a Docker Engine does.
    #[error("docker: {what}: unexpected answer from {address} (is it a Docker Engine API?)")]
    Unexpected {
        address: String,
        what: String,
        #[source]
        source: BollardError,
    },
    #[error("docker: {what}: the Docker Engine API at {address} did not answer within {secs} s")]
    NoAnswer {
        address: String,
        what: String,
        secs: u64,
    },
    #[error("docker: no such container {container} (engine at {address})")]
    NoSuchContainer { container: String, address: String },
    #[error("docker: container {container}")]
    NotReady {
        container: String,
        #[source]
        source: procfs::NotHandled,
    },
    /// Some containers of a label failed. The first failure is the source; the others
    /// were logged as they happened and are kept in `others`.
    #[error("docker: label {label}: {} of {total} containers failed ({}){}", failed.len(), failed.join(", "),
        if done.is_empty() { String::new() } else { format!("; {done}") })]
    Label {
        label: String,
        total: usize,
        /// The containers that failed, in the order they were tried.
        failed: Vec<String>,
        /// What was done to the others ("sent SIGUSR2 to a, b"), or empty.
        done: String,
        others: Vec<DockerError>,
        #[source]
        first: Box<DockerError>,
    },
}

/// Which containers to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Container(String),
    Label { key: String, value: String },
}

/// Signal mode: kill with `signal`. Restart mode: restart. Says what was done, and
/// whether anything was running (if not, there is nothing to verify).
pub async fn reload(
    selector: &Selector,
    mode: Mode,
    signal: Signal,
) -> Result<Outcome, DockerError> {
    let api = Api::connect().await?;
    match selector {
        Selector::Container(name) => api.one(name, mode, signal).await,
        Selector::Label { key, value } => api.labelled(key, value, mode, signal).await,
    }
}

/// Where the engine is expected, as the user configured it.
pub fn engine_address() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => "unix:///var/run/docker.sock".to_owned(),
    }
}

struct Api {
    docker: Docker,
    address: String,
}

impl Api {
    async fn connect() -> Result<Api, DockerError> {
        let address = engine_address();
        let docker = Docker::connect_with_defaults()
            .map_err(|source| DockerError::Unreachable {
                address: address.clone(),
                what: "connect".into(),
                source,
            })?
            .with_timeout(RESTART_TIMEOUT);
        // bollard speaks API 1.49 by default; older engines refuse it. Negotiating is
        // also the first contact, so an unreachable engine is reported here.
        let docker = match tokio::time::timeout(CALL_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e @ BollardError::DockerResponseServerError { .. })) => {
                return Err(DockerError::Refused {
                    address,
                    what: "GET /version".into(),
                    hint: " (is DOCKER_HOST a Docker Engine API, or a socket proxy that allows GET /version?)",
                    source: e,
                })
            }
            Ok(Err(e)) => return Err(transport_or_api(&address, "GET /version", e)),
            Err(_) => return Err(no_answer(&address, "GET /version", CALL_TIMEOUT)),
        };
        Ok(Api { docker, address })
    }

    async fn call<T>(
        &self,
        what: &str,
        limit: Duration,
        f: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<Result<T, BollardError>, DockerError> {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => Ok(r),
            Err(_) => Err(no_answer(&self.address, what, limit)),
        }
    }

    fn no_such_container(&self, name: &str) -> DockerError {
        DockerError::NoSuchContainer {
            container: name.to_owned(),
            address: self.address.clone(),
        }
    }

    async fn inspect(&self, name: &str) -> Result<Inspected, DockerError> {
        let inspected = self
            .call(
                "inspect",
                CALL_TIMEOUT,
                self.docker
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await?;
        let info = match inspected {
            Ok(i) => i,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(self.no_such_container(name)),
            Err(e) => {
                return Err(transport_or_api(
                    &self.address,
                    &format!("inspect {name}"),
                    e,
                ))
            }
        };
        let state = info.state.unwrap_or_default();
        Ok(Inspected {
            id: info.id.unwrap_or_default(),
            running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            pid: state.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
            started_at: state
                .started_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
        })
    }

    async fn one(&self, name: &str, mode: Mode, signal: Signal) -> Result<Outcome, DockerError> {
        match mode {
            Mode::Signal => match self.signal_one(name, signal).await? {
                Kill::Sent => Ok(Outcome::Reloaded(format!(
                    "sent {} to container {name}",
                    signal.as_str()
                ))),
                Kill::NotRunning(status) => Ok(Outcome::NothingRunning(not_running(name, &status))),
            },
            Mode::Restart => {
                let status = self.inspect(name).await?.status;
                self.restart(name).await?;
                Ok(Outcome::Reloaded(format!(
                    "restarted container {name} (was {status})"
                )))
            }
        }
    }

    /// Inspect, then kill with `signal` if it runs and (when this host shows its
    /// processes) once they handle the signal.
    async fn signal_one(&self, name: &str, signal: Signal) -> Result<Kill, DockerError> {
        let c = self.inspect(name).await?;
        if !c.running {
            return Ok(Kill::NotRunning(c.status));
        }
        let procs = procfs::targets(c.pid, &procfs::Owner::Container(&c.id));
        if procs.is_empty() {
            // Another PID namespace (certsync in a sidecar container) or a remote
            // engine: the engine's start time is all there is to go by.
            let age = c
                .started_at
                .and_then(|t| t.elapsed().ok())
                .unwrap_or(BLIND_SIGNAL_AGE);
            if let Some(wait) = BLIND_SIGNAL_AGE.checked_sub(age) {
                tracing::debug!(
                    container = name,
                    ?wait,
                    "just started; waiting before signalling"
                );
                tokio::time::sleep(wait).await;
            }
        }
        procfs::wait_until_handled(&procs, signal)
            .await
            .map_err(|source| DockerError::NotReady {
                container: name.to_owned(),
                source,
            })?;
        self.kill(name, signal).await
    }

    async fn labelled(
        &self,
        key: &str,
        value: &str,
        mode: Mode,
        signal: Signal,
    ) -> Result<Outcome, DockerError> {
        let label = format!("{key}={value}");
        let filters = HashMap::from([("label".to_owned(), vec![label.clone()])]);
        let options = ListContainersOptions {
            all: false, // running (and paused) containers only
            filters: Some(filters),
            ..Default::default()
        };
        let listed = self
            .call(
                "list containers",
                CALL_TIMEOUT,
                self.docker.list_containers(Some(options)),
            )
            .await?
            .map_err(|e| {
                transport_or_api(
                    &self.address,
                    &format!("list containers with label {label}"),
                    e,
                )
            })?;
        let mut targets = Vec::new();
        let mut oneoffs = Vec::new();
        for c in listed {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .or(c.id.clone())
                .unwrap_or_default();
            let oneoff = c
                .labels
                .as_ref()
                .and_then(|l| l.get(ONEOFF_LABEL))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if oneoff {
                oneoffs.push(name);
            } else {
                targets.push(name);
            }
        }
        targets.sort();
        oneoffs.sort();
        let skipped = if oneoffs.is_empty() {
            String::new()
        } else {
            format!(" (left alone: compose one-off {})", oneoffs.join(", "))
        };
        if targets.is_empty() {
            tracing::warn!(label = %label, "no running container has this label; nothing to reload");
            return Ok(Outcome::NothingRunning(format!(
                "no running container has the label {label}{skipped}; whatever starts later reads the new files"
            )));
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        let mut stopped = 0;
        for name in &targets {
            let r = match mode {
                Mode::Signal => self.signal_one(name, signal).await.map(|k| match k {
                    Kill::Sent => name.clone(),
                    Kill::NotRunning(_) => {
                        stopped += 1;
                        format!("{name} (stopped meanwhile)")
                    }
                }),
                Mode::Restart => self.restart(name).await.map(|()| name.clone()),
            };
            match r {
                Ok(n) => done.push(n),
                Err(error) => {
                    tracing::warn!(label = %label, container = %name, "reload failed: {}", crate::error::Chain(&error));
                    failed.push(name.clone());
                    errors.push(error);
                }
            }
        }
        let verb = match mode {
            Mode::Signal => format!("sent {} to", signal.as_str()),
            Mode::Restart => "restarted".to_owned(),
        };
        if errors.is_empty() && stopped == done.len() {
            Ok(Outcome::NothingRunning(format!(
                "the containers with label {label} stopped meanwhile ({}){skipped}; they will read the new files when they start",
                done.join(", ")
            )))
        } else if errors.is_empty() {
            Ok(Outcome::Reloaded(format!(
                "{verb} {} container{} with label {label}: {}{skipped}",
                done.len(),
                if done.len() == 1 { "" } else { "s" },
                done.join(", ")
            )))
        } else {
            let first = Box::new(errors.remove(0));
            Err(DockerError::Label {
                label,
                total: targets.len(),
                done: if done.is_empty() {
                    String::new()
                } else {
                    format!("{verb} {}", done.join(", "))
                },
                failed,
                others: errors,
                first,
            })
        }
    }

    async fn kill(&self, name: &str, signal: Signal) -> Result<Kill, DockerError> {
        let options = KillContainerOptions {
            signal: signal.as_str().to_owned(),
        };
        match self
            .call(
                "kill",
                CALL_TIMEOUT,
                self.docker.kill_container(name, Some(options)),
            )
            .await?
        {
            Ok(()) => Ok(Kill::Sent),
            // Stopped between the look-up and the kill: it reads the files when it starts.
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("is not running") => {
                Ok(Kill::NotRunning("stopped meanwhile".into()))
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(self.no_such_container(name)),
            Err(e) => Err(transport_or_api(
                &self.address,
                &format!("kill {name} with {}", signal.as_str()),
                e,
            )),
        }
    }

    async fn restart(&self, name: &str) -> Result<(), DockerError> {
        match self
            .call(
                "restart",
                RESTART_TIMEOUT,
                self.docker
                    .restart_container(name, None::<RestartContainerOptions>),
            )
            .await?
        {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(self.no_such_container(name)),
            Err(e) => Err(transport_or_api(
                &self.address,
                &format!("restart {name}"),
                e,
            )),
        }
    }
}

enum Kill {
    Sent,
    /// With the container's status.
    NotRunning(String),
}

struct Inspected {
    id: String,
    running: bool,
    status: String,
    /// Host pid of the container's first process (0 when not running).
    pid: u32,
    started_at: Option<std::time::SystemTime>,
}

/// How long a container must have run before it is signalled blind, when this host
/// cannot see its processes: coturn handles SIGUSR2 only ~170 ms after it starts, and
/// a signal before that kills it.
const BLIND_SIGNAL_AGE: Duration = Duration::from_secs(2);

fn not_running(name: &str, status: &str) -> String {
    format!("container {name} is not running ({status}); it will read the new files when it starts")
}

fn no_answer(address: &str, what: &str, limit: Duration) -> DockerError {
    DockerError::NoAnswer {
        address: address.to_owned(),
        what: what.to_owned(),
        secs: limit.as_secs(),
    }
}

/// An answer from the engine is quoted; anything else means the engine was not reached.
fn transport_or_api(address: &str, what: &str, e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError { .. } => DockerError::Refused {
            address: address.to_owned(),
            what: what.to_owned(),
            hint: "",
            source: e,
        },
        BollardError::RequestTimeoutError => no_answer(address, what, RESTART_TIMEOUT),
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            DockerError::Unexpected {
                address: address.to_owned(),
                what: what.to_owned(),
                source: e,
            }
        }
        _ => DockerError::Unreachable {
            address: address.to_owned(),
            what: what.to_owned(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_failure_names_every_failed_container_and_keeps_the_first_cause() {
        let gone = |name: &str| DockerError::NoSuchContainer {
            container: name.into(),
            address: "unix:///var/run/docker.sock".into(),
        };
        let e = DockerError::Label {
            label: "app=turn".into(),
            total: 3,
            failed: vec!["a".into(), "c".into()],
            done: "sent SIGUSR2 to b".into(),
            others: vec![gone("c")],
            first: Box::new(gone("a")),
        };
        assert_eq!(
            crate::error::Chain(&e).to_string(),
            "docker: label app=turn: 2 of 3 containers failed (a, c); sent SIGUSR2 to b: \
             docker: no such container a (engine at unix:///var/run/docker.sock)"
        );
    }
}
