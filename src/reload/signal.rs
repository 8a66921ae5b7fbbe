//! Reload by signalling processes found through /proc, where there is no systemd and
//! no Docker API to ask: a Kubernetes pod with `shareProcessNamespace`, a compose
//! sidecar with `pid: service:coturn`, a plain host.
//!
//! * `--signal-pid-file FILE`: the process whose PID is in FILE (coturn's `pidfile=`).
//! * `--signal-process NAME`: every process whose executable name is NAME.
//!
//! The same safety as the systemd and Docker signal paths ([`procfs`]): a process is
//! signalled only once it catches (or ignores) the signal, never killed by one it does
//! not handle yet. Each process is held by a pidfd from the moment it is checked, so
//! the signal reaches the process that was checked, or none if it exited meanwhile;
//! never a newcomer that was given the same PID.
//!
//! A PID file is input from another program, possibly stale, possibly hostile: it must
//! be a regular file (not a symlink, FIFO or /proc entry) of a few bytes holding one
//! decimal PID above 1, not certsync's own, naming a live process that started before
//! the file was written (a later one got a recycled PID, and is not the server).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags};

use super::procfs::{self, Proc};
use super::Outcome;

/// A PID file longer than this is not one (a PID is at most 7 digits on Linux).
const MAX_PID_FILE: u64 = 32;
/// How much later than its PID file a process may seem to have started and still be
/// the one that wrote it: the kernel's boot time is known to the second, and clocks
/// drift.
const START_SLACK: Duration = Duration::from_secs(2);
/// What the kernel keeps of an executable's name in /proc/PID/comm (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// Why a reload by signal failed. Each names the PID file or the process name.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("signal: cannot read the PID file {}", path.display())]
    ReadPidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signal: {} is not a PID file: {why}", path.display())]
    NotAPidFile { path: PathBuf, why: &'static str },
    #[error("signal: the PID file {} holds {content:?}, not a process id", path.display())]
    BadPid { path: PathBuf, content: String },
    #[error("signal: the PID file {} names PID {pid}: refusing to signal {}", path.display(),
        if *pid == std::process::id() { "certsync itself" } else { "init or the kernel" })]
    Refused { path: PathBuf, pid: u32 },
    #[error("signal: the PID file {} names PID {pid}, but no such process is running (is the server running? the file may be stale)", path.display())]
    NoSuchProcess { path: PathBuf, pid: u32 },
    #[error("signal: the PID file {} names PID {pid} ({comm}), which started {} s after the file was written: the file is stale and that PID now belongs to another process", path.display(), later.as_secs())]
    Stale {
        path: PathBuf,
        pid: u32,
        comm: String,
        later: Duration,
    },
    #[error("signal: cannot list the processes in /proc")]
    ListProcesses {
        #[source]
        source: std::io::Error,
    },
    #[error("signal: cannot open process {pid} ({comm})")]
    Open {
        pid: u32,
        comm: String,
        #[source]
        source: std::io::Error,
    },
    #[error("signal: cannot send {signal} to process {pid} ({comm})")]
    Send {
        pid: u32,
        comm: String,
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// `whom` is "the PID file F" or "the processes named N".
    #[error("signal: {whom}")]
    NotReady {
        whom: String,
        #[source]
        source: procfs::NotHandled,
    },
}

/// A process held by a pidfd, as it was checked.
struct Held {
    proc: Proc,
    fd: OwnedFd,
}

/// Sends `signal` to the process named by the PID file at `path`.
pub async fn pid_file(path: &Path, signal: Signal) -> Result<Outcome, SignalError> {
    pid_file_within(path, signal, procfs::READY_TIMEOUT).await
}

/// [`pid_file`], waiting at most `patience` for the process to handle the signal.
pub async fn pid_file_within(
    path: &Path,
    signal: Signal,
    patience: Duration,
) -> Result<Outcome, SignalError> {
    let (pid, written_at) = read_pid_file(path)?;
    let no_such = || SignalError::NoSuchProcess {
        path: path.to_owned(),
        pid,
    };
    // Held first, checked second: what is checked is what gets the signal.
    let fd = match open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => return Err(no_such()),
        Err(source) => {
            return Err(SignalError::Open {
                pid,
                comm: String::new(),
                source,
            })
        }
    };
    let stat = Stat::read(pid).ok_or_else(no_such)?;
    if stat.zombie {
        return Err(no_such());
    }
    if let (Some(started), Some(written)) = (stat.started_at(), written_at) {
        if let Ok(later) = started.duration_since(written) {
            if later > START_SLACK {
                return Err(SignalError::Stale {
                    path: path.to_owned(),
                    pid,
                    comm: stat.comm,
                    later,
                });
            }
        }
    }
    let held = Held {
        proc: Proc {
            pid,
            comm: stat.comm,
        },
        fd,
    };
    procfs::wait_until_handled_for(std::slice::from_ref(&held.proc), signal, patience)
        .await
        .map_err(|source| SignalError::NotReady {
            whom: format!("the PID file {}", path.display()),
            source,
        })?;
    match send(&held, signal) {
        Ok(true) => Ok(Outcome::Reloaded(format!(
            "sent {} to process {} ({}) of the PID file {}",
            signal.as_str(),
            pid,
            held.proc.comm,
            path.display()
        ))),
        Ok(false) => Err(no_such()),
        Err(e) => Err(e),
    }
}

/// Sends `signal` to every process whose executable name is `name`.
pub async fn process(name: &str, signal: Signal) -> Result<Outcome, SignalError> {
    process_within(name, signal, procfs::READY_TIMEOUT).await
}

/// [`process`], waiting at most `patience` for the processes to handle the signal.
pub async fn process_within(
    name: &str,
    signal: Signal,
    patience: Duration,
) -> Result<Outcome, SignalError> {
    let held = find(name)?;
    if held.is_empty() {
        return Ok(Outcome::NothingRunning(format!(
            "no process named {name} is running; it will read the new files when it starts"
        )));
    }
    let procs: Vec<Proc> = held.iter().map(|h| h.proc.clone()).collect();
    procfs::wait_until_handled_for(&procs, signal, patience)
        .await
        .map_err(|source| SignalError::NotReady {
            whom: format!("the processes named {name}"),
            source,
        })?;
    let mut sent = Vec::new();
    for h in &held {
        if send(h, signal)? {
            sent.push(h.proc.pid.to_string());
        }
    }
    if sent.is_empty() {
        return Ok(Outcome::NothingRunning(format!(
            "the processes named {name} exited meanwhile; they will read the new files when they start"
        )));
    }
    Ok(Outcome::Reloaded(format!(
        "sent {} to {} process{} named {name}: {}",
        signal.as_str(),
        sent.len(),
        if sent.len() == 1 { "" } else { "es" },
        sent.join(", ")
    )))
}

/// The PID in the file and when the file was last written.
fn read_pid_file(path: &Path) -> Result<(u32, Option<SystemTime>), SignalError> {
    let not = |why| SignalError::NotAPidFile {
        path: path.to_owned(),
        why,
    };
    let read_err = |source| SignalError::ReadPidFile {
        path: path.to_owned(),
        source,
    };
    // O_NOFOLLOW: a symlink planted in its place could point anywhere (a counter in
    // /proc holds a plausible PID). O_NONBLOCK: a FIFO must not block the reload.
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => not("it is a symbolic link"),
            _ => read_err(e),
        })?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(not("it is not a regular file"));
    }
    // /proc and /sys files say they are empty; a real PID file never is.
    if meta.len() == 0 || meta.len() > MAX_PID_FILE {
        return Err(not("its size is not that of a PID"));
    }
    let mut bytes = Vec::with_capacity(MAX_PID_FILE as usize);
    file.take(MAX_PID_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PID_FILE {
        return Err(not("its size is not that of a PID"));
    }
    let text = String::from_utf8_lossy(&bytes);
    let digits = text.trim_ascii();
    let pid = Some(digits)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u32>().ok())
        .filter(|p| i32::try_from(*p).is_ok())
        .ok_or_else(|| SignalError::BadPid {
            path: path.to_owned(),
            content: text.chars().take(MAX_PID_FILE as usize).collect(),
        })?;
    if pid <= 1 || pid == std::process::id() {
        return Err(SignalError::Refused {
            path: path.to_owned(),
            pid,
        });
    }
    Ok((pid, meta.modified().ok()))
}

/// Every live process whose executable name is `name`, held by a pidfd and checked
/// again once held.
fn find(name: &str) -> Result<Vec<Held>, SignalError> {
    let me = std::process::id();
    let entries =
        std::fs::read_dir("/proc").map_err(|source| SignalError::ListProcesses { source })?;
    let mut held = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !is_named(pid, name) {
            continue;
        }
        let fd = match open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => continue,
            Err(source) => {
                return Err(SignalError::Open {
                    pid,
                    comm: name.to_owned(),
                    source,
                })
            }
        };
        // The PID may have been recycled between the look and the pidfd: look again.
        match Stat::read(pid) {
            Some(stat) if !stat.zombie && is_named(pid, name) => held.push(Held {
                proc: Proc {
                    pid,
                    comm: stat.comm,
                },
                fd,
            }),
            _ => continue,
        }
    }
    held.sort_by_key(|h| h.proc.pid);
    Ok(held)
}

/// Whether process PID's executable name is `name`: its `comm`, or the file name of
/// its executable. `comm` is cut to 15 bytes; the executable link tells a longer name,
/// but only to a process allowed to trace PID, so without it a cut `comm` that begins
/// `name` is taken as a match.
fn is_named(pid: u32, name: &str) -> bool {
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    let comm = comm.trim_end_matches('\n');
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe_name = exe.as_deref().and_then(|p| p.file_name()).map(|n| {
        let n = n.to_string_lossy();
        n.strip_suffix(" (deleted)").unwrap_or(&n).to_owned()
    });
    if comm == name || exe_name.as_deref() == Some(name) {
        return true;
    }
    exe.is_none()
        && name.len() > COMM_LEN
        && comm.len() == COMM_LEN
        && name.as_bytes().starts_with(comm.as_bytes())
}

fn open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::ESRCH))?;
    pidfd_open(pid, PidfdFlags::empty()).map_err(std::io::Error::from)
}

/// Sends the signal through the pidfd; `false` when the process exited meanwhile.
fn send(h: &Held, signal: Signal) -> Result<bool, SignalError> {
    let sig = rustix::process::Signal::from_named_raw(signal as i32).ok_or_else(|| {
        SignalError::Send {
            pid: h.proc.pid,
            comm: h.proc.comm.clone(),
            signal: signal.as_str(),
            source: std::io::Error::from_raw_os_error(nix::libc::EINVAL),
        }
    })?;
    match pidfd_send_signal(&h.fd, sig) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(SignalError::Send {
            pid: h.proc.pid,
            comm: h.proc.comm.clone(),
            signal: signal.as_str(),
            source: e.into(),
        }),
    }
}

/// What /proc/PID/stat says about a process.
struct Stat {
    comm: String,
    zombie: bool,
    /// Clock ticks after boot at which it started.
    start_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so it
        // ends at the last ')'.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        // Fields 3 (state) and 22 (starttime) of proc(5), counted from 1.
        let zombie = matches!(rest.first(), Some(&"Z") | Some(&"X"));
        let start_ticks = rest.get(22 - 3)?.parse().ok()?;
        Some(Stat {
            comm,
            zombie,
            start_ticks,
        })
    }

    /// When the process started, by the wall clock (to the boot time's second).
    fn started_at(&self) -> Option<SystemTime> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)?;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let boot: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let after_boot = Duration::from_millis(self.start_ticks.saturating_mul(1000) / ticks);
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + after_boot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::{Child, Command, Stdio};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A `sleep` that does not handle SIGUSR2 (its default action is to terminate).
    struct Sleeper(Child);

    impl Sleeper {
        fn start(program: &Path) -> Sleeper {
            Sleeper(
                Command::new(program)
                    .arg("30")
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        }

        fn alive(&mut self) -> bool {
            matches!(self.0.try_wait(), Ok(None))
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleep_bin() -> PathBuf {
        PathBuf::from(
            String::from_utf8(
                Command::new("sh")
                    .args(["-c", "command -v sleep"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim(),
        )
    }

    fn pid_file_error(dir: &Path, name: &str, content: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        rt().block_on(pid_file(&path, Signal::SIGUSR2))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hostile_pid_files_are_refused_without_signalling_anything() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(pid_file_error(d, "init", b"1\n").contains("names PID 1: refusing to signal init"));
        assert!(pid_file_error(d, "zero", b"0").contains("refusing"));
        let me = std::process::id().to_string();
        assert!(pid_file_error(d, "me", me.as_bytes()).contains("certsync itself"));
        assert!(pid_file_error(d, "neg", b"-1").contains("holds \"-1\", not a process id"));
        assert!(pid_file_error(d, "words", b"12 13").contains("not a process id"));
        assert!(pid_file_error(d, "huge", b"99999999999").contains("not a process id"));
        assert!(pid_file_error(d, "empty", b"").contains("its size is not that of a PID"));
        assert!(pid_file_error(d, "long", &[b'7'; 4096]).contains("its size is not that of a PID"));

        // A symlink to a counter in /proc that holds a plausible PID.
        let link = d.join("link");
        symlink("/proc/sys/kernel/ns_last_pid", &link).unwrap();
        let e = rt().block_on(pid_file(&link, Signal::SIGUSR2)).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        // The same file named directly: it says it is empty.
        let e = rt()
            .block_on(pid_file(
                Path::new("/proc/sys/kernel/ns_last_pid"),
                Signal::SIGUSR2,
            ))
            .unwrap_err();
        assert!(
            e.to_string().contains("its size is not that of a PID"),
            "{e}"
        );
        // A FIFO would block a plain read.
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = rt().block_on(pid_file(&fifo, Signal::SIGUSR2)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = rt()
            .block_on(pid_file(&d.join("missing"), Signal::SIGUSR2))
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot read the PID file")
                && std::error::Error::source(&e).is_some(),
            "{e}"
        );
    }

    #[test]
    fn a_pid_file_of_a_dead_or_newer_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // A PID that was just used and is now free.
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        let e = pid_file_error(dir.path(), "dead", format!("{pid}\n").as_bytes());
        assert!(
            e.contains(&format!("names PID {pid}, but no such process is running")),
            "{e}"
        );

        // A process started after the file was written: its PID was recycled.
        let path = dir.path().join("old.pid");
        let mut s = Sleeper::start(&sleep_bin());
        std::fs::write(&path, format!("{}\n", s.0.id())).unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        let e = rt()
            .block_on(pid_file(&path, Signal::SIGUSR2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the file is stale"), "{e}");
        assert!(s.alive());
    }

    #[test]
    fn a_process_that_does_not_handle_the_signal_is_not_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sleeper::start(&sleep_bin());
        let path = dir.path().join("sleep.pid");
        std::fs::write(&path, format!("{}\n", s.0.id())).unwrap();
        let e = rt()
            .block_on(pid_file_within(
                &path,
                Signal::SIGUSR2,
                Duration::from_millis(200),
            ))
            .unwrap_err();
        let shown = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            shown.contains("does not handle SIGUSR2") && shown.contains("it was not sent"),
            "{shown}"
        );
        assert!(s.alive(), "sleep was killed by SIGUSR2");

        // By name: a copy of sleep under a name no other process has.
        let name = format!("csync-t{}", std::process::id() % 100_000);
        let copy = dir.path().join(&name);
        std::fs::copy(sleep_bin(), &copy).unwrap();
        let mut named = Sleeper::start(&copy);
        wait_for_comm(named.0.id(), &name);
        let e = rt()
            .block_on(process_within(
                &name,
                Signal::SIGUSR2,
                Duration::from_millis(200),
            ))
            .unwrap_err();
        assert!(
            e.to_string().contains(&format!("processes named {name}")),
            "{e}"
        );
        assert!(named.alive());
    }

    #[test]
    fn a_process_that_catches_the_signal_gets_it_once_per_reload() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("csync-h{}", std::process::id() % 100_000);
        let copy = dir.path().join(&name);
        std::fs::copy("/bin/sh", &copy).unwrap();
        let got = dir.path().join("got");
        let ready = dir.path().join("ready");
        let script = format!(
            "trap 'echo usr2 >> {g}' USR2; touch {r}; while :; do sleep 0.05; done",
            g = got.display(),
            r = ready.display()
        );
        let mut sh = Sleeper(
            Command::new(&copy)
                .args(["-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(|| ready.exists());
        let pid = sh.0.id();
        let done = rt().block_on(process(&name, Signal::SIGUSR2)).unwrap();
        // The shell forks for each `sleep`: a child caught between fork and exec still
        // bears the name, and is signalled too (it inherited the trap).
        let Outcome::Reloaded(said) = done else {
            panic!("{done:?}")
        };
        assert!(
            said.starts_with("sent SIGUSR2 to ")
                && said.contains(&format!("named {name}: "))
                && said
                    .split(": ")
                    .nth(1)
                    .is_some_and(|pids| pids.split(", ").any(|p| p == pid.to_string())),
            "{said}"
        );
        // Wait for the trap: two signals pending at once would count as one.
        wait_for(|| std::fs::read_to_string(&got).is_ok_and(|t| t == "usr2\n"));
        let pid_path = dir.path().join("sh.pid");
        std::fs::write(&pid_path, format!("{pid}\n")).unwrap();
        let done = rt().block_on(pid_file(&pid_path, Signal::SIGUSR2)).unwrap();
        assert_eq!(
            done,
            Outcome::Reloaded(format!(
                "sent SIGUSR2 to process {pid} ({name}) of the PID file {}",
                pid_path.display()
            ))
        );
        wait_for(|| std::fs::read_to_string(&got).is_ok_and(|t| t == "usr2\nusr2\n"));
        assert!(sh.alive());
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(std::time::Instant::now() < end, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A child shows its own name only once it has exec'd.
    fn wait_for_comm(pid: u32, want: &str) {
        wait_for(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == want)
        });
    }

    #[test]
    fn names_match_comm_or_the_executable_and_nothing_running_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        // Longer than comm keeps: found through /proc/PID/exe.
        let name = format!("certsync-long-name-{}", std::process::id());
        let copy = dir.path().join(&name);
        std::fs::copy(sleep_bin(), &copy).unwrap();
        let s = Sleeper::start(&copy);
        wait_for_comm(s.0.id(), &name[..COMM_LEN]);
        assert!(is_named(s.0.id(), &name));
        assert!(!is_named(s.0.id(), &name[..name.len() - 1]));
        let found: Vec<u32> = find(&name).unwrap().iter().map(|h| h.proc.pid).collect();
        assert_eq!(found, vec![s.0.id()]);

        let none = format!("no-such-{}", std::process::id());
        assert_eq!(
            rt().block_on(process(&none, Signal::SIGUSR2)).unwrap(),
            Outcome::NothingRunning(format!(
                "no process named {none} is running; it will read the new files when it starts"
            ))
        );
    }

    #[test]
    fn stat_reads_names_with_spaces_and_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        let name = "a) (b c";
        let copy = dir.path().join(name);
        std::fs::copy(sleep_bin(), &copy).unwrap();
        let s = Sleeper::start(&copy);
        wait_for_comm(s.0.id(), name);
        let stat = Stat::read(s.0.id()).unwrap();
        assert_eq!(stat.comm, name);
        assert!(!stat.zombie);
        let age = SystemTime::now()
            .duration_since(stat.started_at().unwrap())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "{age:?}");
        assert!(is_named(s.0.id(), name));
    }
}
