//! Is the process we are about to signal ready for that signal?
//!
//! SIGUSR2's default action is to terminate. coturn installs its handler some 150 ms
//! after it starts listening, so a signal sent to a coturn that has just started (at
//! boot, or right after a restart) kills it. When the target process is visible in
//! our /proc *and* is provably the right one (its cgroup path names the unit or the
//! container), we wait until it catches (or ignores) the signal before sending it,
//! and refuse to send it if it never does. When it is not visible (certsync in another
//! PID namespace, a remote engine), nothing is checked.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// How long a starting process has to install its handler.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

/// What a process must belong to, to be the one we mean.
pub enum Owner<'a> {
    Unit(&'a str),
    Container(&'a str),
}

/// The processes to check before signalling PID: PID itself, or the children of a
/// forwarding init. Empty when PID is not visible as `owner`'s.
pub fn targets(pid: u32, owner: &Owner<'_>) -> Vec<Proc> {
    match visible(pid, owner) {
        None => Vec::new(),
        Some(p) if is_forwarding_init(&p) => children(p.pid),
        Some(p) => vec![p],
    }
}

/// One process, as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub comm: String,
}

/// The process PID, if /proc shows it and a component of its cgroup path is `owner`:
/// a unit name (`coturn.service`) or a container id (`/docker/ID`, `docker-ID.scope`).
pub fn visible(pid: u32, owner: &Owner<'_>) -> Option<Proc> {
    if pid == 0 {
        return None;
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let ours = cgroup.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        path.split('/').any(|c| match owner {
            Owner::Unit(u) => c == *u,
            Owner::Container(id) => id.len() >= 12 && c.contains(id),
        })
    });
    if !ours {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(Proc {
        pid,
        comm: comm.trim().to_owned(),
    })
}

/// The children of PID (needs CONFIG_PROC_CHILDREN; empty when unknown).
pub fn children(pid: u32) -> Vec<Proc> {
    let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return Vec::new();
    };
    list.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
            Some(Proc {
                pid: p,
                comm: comm.trim().to_owned(),
            })
        })
        .collect()
}

/// An init that only forwards signals (docker run --init, tini, dumb-init): the
/// process that matters is its child.
pub fn is_forwarding_init(p: &Proc) -> bool {
    matches!(
        p.comm.as_str(),
        "docker-init" | "tini" | "dumb-init" | "catatonit"
    )
}

/// Whether PID catches or ignores `signal` (so it does not die of it); `None` when
/// /proc no longer shows it.
pub fn handles(pid: u32, signal: Signal) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (signal as i32 - 1);
    Some((mask("SigCgt:") | mask("SigIgn:")) & bit != 0)
}

/// A process that would die of the signal, so it was not sent.
#[derive(Debug, thiserror::Error)]
#[error("process {pid} ({comm}) does not handle {signal} after {} ms: sending it would terminate it, so it was not sent", waited.as_millis())]
pub struct NotHandled {
    pub pid: u32,
    pub comm: String,
    pub signal: &'static str,
    pub waited: Duration,
}

/// Waits until every process catches or ignores `signal`. `Err` names the first one
/// that still would die of it after [`READY_TIMEOUT`].
pub async fn wait_until_handled(procs: &[Proc], signal: Signal) -> Result<(), NotHandled> {
    wait_until_handled_for(procs, signal, READY_TIMEOUT).await
}

/// [`wait_until_handled`] with a chosen patience.
pub async fn wait_until_handled_for(
    procs: &[Proc],
    signal: Signal,
    patience: Duration,
) -> Result<(), NotHandled> {
    let started = Instant::now();
    for p in procs {
        loop {
            match handles(p.pid, signal) {
                Some(true) | None => break, // handled, or gone (nothing to kill)
                Some(false) if started.elapsed() >= patience => {
                    return Err(NotHandled {
                        pid: p.pid,
                        comm: p.comm.clone(),
                        signal: signal.as_str(),
                        waited: started.elapsed(),
                    });
                }
                Some(false) => tokio::time::sleep(POLL).await,
            }
        }
    }
    if started.elapsed() > POLL {
        tracing::info!(
            "waited {} ms for {} to handle {}",
            started.elapsed().as_millis(),
            procs
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.comm))
                .collect::<Vec<_>>()
                .join(", "),
            signal.as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_does_not_catch_usr2_but_ignores_what_it_ignores() {
        let me = std::process::id();
        assert_eq!(handles(me, Signal::SIGUSR2), Some(false));
        assert_eq!(handles(u32::MAX, Signal::SIGUSR2), None);
    }
}
