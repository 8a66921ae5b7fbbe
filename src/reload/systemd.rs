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

use super::{procfs, Bus, Mode, Outcome, ReloadError};

/// Connecting to the bus (authentication included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One method call or property read.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// A restart job (systemd's own default start and stop timeouts are 90 s each).
const JOB_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a unit may stay "activating"/"reloading" before a signal is sent anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

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
) -> Result<Outcome, ReloadError> {
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
) -> Result<Outcome, ReloadError> {
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
            return Err(ReloadError::Systemd(format!(
                "{unit} is still {state} after {} s; not signalling it yet",
                SETTLE_TIMEOUT.as_secs()
            )))
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
            .map_err(|e| ReloadError::Systemd(format!("{unit}: {e}")))?;
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
) -> Result<Outcome, ReloadError> {
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
        Ok(Some(result)) => Err(ReloadError::Systemd(format!(
            "restarting {unit} failed: the job's result is {result:?}{}",
            job_result_hint(&result)
        ))),
        Ok(None) => Err(ReloadError::Systemd(format!(
            "lost the connection to the {} bus while waiting for the restart job of {unit}",
            bus_name(bus)
        ))),
        Err(_) => Err(ReloadError::Systemd(format!(
            "the restart job {} of {unit} did not finish within {} s",
            job.as_str(),
            JOB_TIMEOUT.as_secs()
        ))),
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

async fn connect(bus: Bus) -> Result<zbus::Connection, ReloadError> {
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
    let fail = |e: String| {
        ReloadError::Systemd(format!(
            "cannot connect to the {} bus at {shown}: {e}",
            bus_name(bus)
        ))
    };
    let builder = address
        .and_then(zbus::connection::Builder::address)
        .map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!(
            "no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs one D-Bus call with a timeout, turning its error into a clear message.
async fn call<T>(
    what: &str,
    unit: &str,
    f: impl Future<Output = zbus::Result<T>>,
) -> Result<T, ReloadError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ReloadError::Systemd(describe(what, unit, &e))),
        Err(_) => Err(ReloadError::Systemd(format!(
            "{what}({unit}): systemd did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// A D-Bus error, in words an operator can act on.
fn describe(what: &str, unit: &str, e: &zbus::Error) -> String {
    let (name, detail) = match e {
        zbus::Error::MethodError(name, detail, _) => {
            (name.as_str().to_owned(), detail.clone().unwrap_or_default())
        }
        zbus::Error::FDO(fdo) => {
            let name = zbus::DBusError::name(fdo.as_ref()).as_str().to_owned();
            (
                name,
                zbus::DBusError::description(fdo.as_ref())
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
        other => return format!("{what}({unit}): {other}"),
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => format!(
            "{what}({unit}): access denied by polkit/D-Bus policy: run certsync as root or grant \
             org.freedesktop.systemd1.manage-units ({name}: {detail})"
        ),
        "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed" => {
            format!("{what}({unit}): no such unit ({detail})")
        }
        "org.freedesktop.systemd1.NoSuchProcess" => {
            format!("{what}({unit}): the unit has no main process to signal ({detail})")
        }
        "org.freedesktop.systemd1.UnitMasked" => {
            format!("{what}({unit}): the unit is masked ({detail})")
        }
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => format!(
            "{what}({unit}): no systemd manager on this bus (org.freedesktop.systemd1 is not there: {detail})"
        ),
        _ if detail.is_empty() => format!("{what}({unit}): {name}"),
        _ => format!("{what}({unit}): {name}: {detail}"),
    }
}

fn no_such_unit(unit: &str, bus: Bus) -> ReloadError {
    ReloadError::Systemd(format!(
        "unit {unit} does not exist on the {} manager (LoadState not-found; check the name{})",
        bus_name(bus),
        match bus {
            Bus::System => ", or use --systemd-bus user for a user unit",
            Bus::User => "",
        }
    ))
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
