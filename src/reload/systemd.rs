//! Reload through systemd's D-Bus API (org.freedesktop.systemd1), with zbus.
//!
//! * `signal` mode: the unit is looked up first (LoadUnit, then its LoadState and
//!   ActiveState). A unit that does not exist is an error; a unit that is not running
//!   is not (it reads the new files when it starts); a running one gets
//!   `KillUnit(unit, "main", signal)`.
//! * `restart` mode: subscribe to `JobRemoved`, call `RestartUnit(unit, "replace")`,
//!   then wait (bounded) for the `JobRemoved` of that job and report its result.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zbus::export::futures_core::Stream;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use super::{procfs, Bus, Mode, Outcome};

/// Connecting to the bus (authentication included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One method call or property read.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// A restart job (systemd's own default start and stop timeouts are 90 s each).
const JOB_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a unit may stay "activating"/"reloading" before a signal is sent anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a reload through systemd failed. Each names the unit (or the bus) it is about.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("systemd: cannot connect to the {bus} bus at {address}")]
    Connect {
        bus: &'static str,
        address: String,
        #[source]
        source: zbus::Error,
    },
    #[error("systemd: cannot connect to the {bus} bus at {address}: no answer within {secs} s")]
    ConnectTimeout {
        bus: &'static str,
        address: String,
        secs: u64,
    },
    /// A method call or property read failed; `hint` says what the D-Bus error means
    /// for an operator (empty when there is nothing to add).
    #[error("systemd: {call}({unit}){hint}")]
    Call {
        call: &'static str,
        unit: String,
        hint: &'static str,
        #[source]
        source: zbus::Error,
    },
    #[error("systemd: {call}({unit}): systemd did not answer within {secs} s")]
    CallTimeout {
        call: &'static str,
        unit: String,
        secs: u64,
    },
    #[error("systemd: unit {unit} does not exist on the {bus} manager (LoadState not-found; check the name{})",
        if *bus == "system" { ", or use --systemd-bus user for a user unit" } else { "" })]
    NoSuchUnit { unit: String, bus: &'static str },
    #[error("systemd: {unit} is still {state} after {secs} s; not signalling it yet")]
    StillStarting {
        unit: String,
        state: String,
        secs: u64,
    },
    #[error("systemd: {unit}")]
    NotReady {
        unit: String,
        #[source]
        source: procfs::NotHandled,
    },
    #[error(
        "systemd: restarting {unit} failed: the job's result is {result:?}{}",
        job_result_hint(result)
    )]
    JobFailed { unit: String, result: String },
    #[error(
        "systemd: lost the connection to the {bus} bus while waiting for the restart job of {unit}"
    )]
    JobLost { unit: String, bus: &'static str },
    #[error("systemd: the restart job {job} of {unit} did not finish within {secs} s")]
    JobTimeout {
        unit: String,
        job: String,
        secs: u64,
    },
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}

/// Signal mode: KillUnit(unit, "main", signal). Restart mode: RestartUnit(unit,
/// "replace") and wait for its JobRemoved. Says what was done, and whether anything
/// was running (if not, there is nothing to verify).
pub async fn reload(
    unit: &str,
    bus: Bus,
    mode: Mode,
    signal: Signal,
) -> Result<Outcome, SystemdError> {
    let unit = mangle_unit_name(unit);
    let conn = connect(bus).await?;
    let manager = call("connect to systemd", &unit, async {
        ManagerProxy::new(&conn).await
    })
    .await?;
    match mode {
        Mode::Signal => kill(&conn, &manager, &unit, bus, signal).await,
        Mode::Restart => restart(&conn, &manager, &unit, bus).await,
    }
}

async fn kill(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
    bus: Bus,
    signal: Signal,
) -> Result<Outcome, SystemdError> {
    let path = call("LoadUnit", unit, manager.load_unit(unit)).await?;
    let props = call("read the unit's state", unit, async {
        UnitProxy::builder(conn)
            .path(path.clone())?
            .cache_properties(CacheProperties::No)
            .build()
            .await
    })
    .await?;
    let load = call("read LoadState", unit, props.load_state()).await?;
    if load == "not-found" {
        return Err(no_such_unit(unit, bus));
    }
    // A unit that is still starting may not have set up its signal handlers yet (and
    // SIGUSR2's default action is to terminate): wait a little for it to settle.
    let started = Instant::now();
    let mut state = call("read ActiveState", unit, props.active_state()).await?;
    while matches!(state.as_str(), "activating" | "reloading" | "refreshing")
        && started.elapsed() < SETTLE_TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = call("read ActiveState", unit, props.active_state()).await?;
    }
    match state.as_str() {
        "active" => {}
        "activating" | "reloading" | "refreshing" => {
            return Err(SystemdError::StillStarting {
                unit: unit.to_owned(),
                state,
                secs: SETTLE_TIMEOUT.as_secs(),
            })
        }
        _ => {
            let sub = call("read SubState", unit, props.sub_state())
                .await
                .unwrap_or_default();
            return Ok(Outcome::NothingRunning(format!(
                "{unit} is not running ({state}{}{sub}); it will read the new files when it starts",
                if sub.is_empty() { "" } else { "/" }
            )));
        }
    }
    // A main process that has just started may not handle the signal yet (coturn
    // sets up its handler after it starts listening): wait for it, when /proc shows it.
    if unit.ends_with(".service") {
        let service = call("read MainPID", unit, async {
            ServiceProxy::builder(conn)
                .path(path)?
                .cache_properties(CacheProperties::No)
                .build()
                .await
        })
        .await?;
        let pid = call("read MainPID", unit, service.main_pid()).await?;
        let procs = procfs::targets(pid, &procfs::Owner::Unit(unit));
        procfs::wait_until_handled(&procs, signal)
            .await
            .map_err(|source| SystemdError::NotReady {
                unit: unit.to_owned(),
                source,
            })?;
    }
    call(
        "KillUnit",
        unit,
        manager.kill_unit(unit, "main", signal as i32),
    )
    .await?;
    Ok(Outcome::Reloaded(format!(
        "sent {} to the main process of {unit} ({} bus)",
        signal.as_str(),
        bus_name(bus)
    )))
}

async fn restart(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
    bus: Bus,
) -> Result<Outcome, SystemdError> {
    // RestartUnit would create a transient "not-found" unit and fail its job: say so
    // plainly instead.
    let path = call("LoadUnit", unit, manager.load_unit(unit)).await?;
    let props = call("read the unit's state", unit, async {
        UnitProxy::builder(conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
    })
    .await?;
    if call("read LoadState", unit, props.load_state()).await? == "not-found" {
        return Err(no_such_unit(unit, bus));
    }

    // The match rule is in place once this returns, so the JobRemoved of our job
    // cannot be missed however fast the job is.
    let mut removed = call(
        "subscribe to JobRemoved",
        unit,
        manager.receive_job_removed(),
    )
    .await?;
    // Job creators are tracked and get JobRemoved anyway; Subscribe() makes sure of it
    // on managers that only emit signals to subscribers. Its failure is not fatal.
    if let Err(e) = tokio::time::timeout(CALL_TIMEOUT, manager.subscribe()).await {
        tracing::debug!(unit, "Subscribe() timed out: {e}");
    }
    let started = Instant::now();
    let job = call("RestartUnit", unit, manager.restart_unit(unit, "replace")).await?;
    let waited = tokio::time::timeout(JOB_TIMEOUT, async {
        while let Some(signal) = next(&mut removed).await {
            let Ok(args) = signal.args() else { continue };
            if args.job == job {
                return Some(args.result.clone());
            }
        }
        None
    })
    .await;
    match waited {
        Ok(Some(result)) if result == "done" => Ok(Outcome::Reloaded(format!(
            "restarted {unit} ({} bus; job {} done in {} ms)",
            bus_name(bus),
            job.as_str(),
            started.elapsed().as_millis()
        ))),
        Ok(Some(result)) => Err(SystemdError::JobFailed {
            unit: unit.to_owned(),
            result,
        }),
        Ok(None) => Err(SystemdError::JobLost {
            unit: unit.to_owned(),
            bus: bus_name(bus),
        }),
        Err(_) => Err(SystemdError::JobTimeout {
            unit: unit.to_owned(),
            job: job.as_str().to_owned(),
            secs: JOB_TIMEOUT.as_secs(),
        }),
    }
}

fn job_result_hint(result: &str) -> &'static str {
    match result {
        "failed" => " (the unit failed to stop or start: see journalctl -u UNIT)",
        "timeout" => " (the unit's start or stop timed out)",
        "canceled" => " (another job replaced it)",
        "dependency" => " (a dependency failed)",
        _ => "",
    }
}

async fn connect(bus: Bus) -> Result<zbus::Connection, SystemdError> {
    let (address, var, default) = match bus {
        Bus::System => (
            zbus::Address::system(),
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/var/run/dbus/system_bus_socket",
        ),
        Bus::User => (
            zbus::Address::session(),
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=$XDG_RUNTIME_DIR/bus",
        ),
    };
    let shown = match &address {
        Ok(a) => a.to_string(),
        Err(_) => match std::env::var(var) {
            Ok(v) => format!("{v:?} ({var})"),
            Err(_) => default.to_owned(),
        },
    };
    let fail = |source: zbus::Error| SystemdError::Connect {
        bus: bus_name(bus),
        address: shown.clone(),
        source,
    };
    let builder = address
        .and_then(zbus::connection::Builder::address)
        .map_err(fail)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(fail(e)),
        Err(_) => Err(SystemdError::ConnectTimeout {
            bus: bus_name(bus),
            address: shown,
            secs: CONNECT_TIMEOUT.as_secs(),
        }),
    }
}

/// Runs one D-Bus call with a timeout.
async fn call<T>(
    what: &'static str,
    unit: &str,
    f: impl Future<Output = zbus::Result<T>>,
) -> Result<T, SystemdError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SystemdError::Call {
            call: what,
            unit: unit.to_owned(),
            hint: hint(&source),
            source,
        }),
        Err(_) => Err(SystemdError::CallTimeout {
            call: what,
            unit: unit.to_owned(),
            secs: CALL_TIMEOUT.as_secs(),
        }),
    }
}

/// What a D-Bus error means for an operator, when its name alone does not say it.
fn hint(e: &zbus::Error) -> &'static str {
    let name = match e {
        zbus::Error::MethodError(name, _, _) => name.as_str().to_owned(),
        zbus::Error::FDO(fdo) => zbus::DBusError::name(fdo.as_ref()).as_str().to_owned(),
        _ => return "",
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
            ": access denied by polkit/D-Bus policy: run certsync as root or grant \
             org.freedesktop.systemd1.manage-units"
        }
        "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed" => {
            ": no such unit"
        }
        "org.freedesktop.systemd1.NoSuchProcess" => ": the unit has no main process to signal",
        "org.freedesktop.systemd1.UnitMasked" => ": the unit is masked",
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            ": no systemd manager on this bus (org.freedesktop.systemd1 is not there)"
        }
        _ => "",
    }
}

fn no_such_unit(unit: &str, bus: Bus) -> SystemdError {
    SystemdError::NoSuchUnit {
        unit: unit.to_owned(),
        bus: bus_name(bus),
    }
}

fn bus_name(bus: Bus) -> &'static str {
    match bus {
        Bus::System => "system",
        Bus::User => "user",
    }
}

/// `coturn` → `coturn.service`, as systemctl does; names with a unit type suffix are kept.
pub fn mangle_unit_name(unit: &str) -> String {
    const SUFFIXES: [&str; 11] = [
        "service",
        "socket",
        "target",
        "device",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
    ];
    match unit.rsplit_once('.') {
        Some((stem, suffix)) if !stem.is_empty() && SUFFIXES.contains(&suffix) => unit.to_owned(),
        _ => format!("{unit}.service"),
    }
}

/// The next item of a stream (no futures-util here).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_get_service_unless_typed() {
        assert_eq!(mangle_unit_name("coturn"), "coturn.service");
        assert_eq!(mangle_unit_name("coturn.service"), "coturn.service");
        assert_eq!(mangle_unit_name("turn@a.b"), "turn@a.b.service");
        assert_eq!(mangle_unit_name("x.socket"), "x.socket");
    }
}
