//! Reload by running a command: `sh -c CMD`.
//!
//! The command gets `CERTSYNC_DOMAIN`, `CERTSYNC_CERT_FILE`, `CERTSYNC_KEY_FILE` and
//! `CERTSYNC_DIR` (absolute paths), no standard input, and its own process group. Each line it
//! prints goes to the log. It has [`TIMEOUT`] to finish; then its whole process group
//! is killed. A non-zero exit is a failed reload, reported with the exit code and the
//! last lines of its standard error.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::Written;

/// How long a reload command may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of standard error quoted in the error of a failed command.
const STDERR_TAIL: usize = 5;
/// After the command ended, how long its output may still take to drain (a background
/// child that kept the pipe open is not waited for).
const DRAIN: Duration = Duration::from_secs(2);

/// Why a reload command failed. `stderr` is "; stderr: a | b" (its last lines) or empty.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("reload command: cannot run sh -c {cmd:?}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reload command: waiting for {cmd:?}")]
    Wait {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reload command: {cmd:?} did not finish within {} s and was killed (with its process group){stderr}", limit.as_secs_f64())]
    TimedOut {
        cmd: String,
        limit: Duration,
        stderr: String,
    },
    #[error("reload command: {cmd:?} failed with {how}{stderr}")]
    Failed {
        cmd: String,
        /// "exit code 7", "killed by signal SIGTERM".
        how: String,
        stderr: String,
    },
}

/// Runs `sh -c cmd` with CERTSYNC_DOMAIN, CERTSYNC_CERT_FILE and CERTSYNC_KEY_FILE set.
pub async fn reload(cmd: &str, written: &Written) -> Result<String, CommandError> {
    run(cmd, written, TIMEOUT).await
}

/// Kills a process group when dropped, unless disarmed: a reload whose future is
/// dropped (shutdown) must not leave the command, or anything it started, running.
/// `kill_on_drop` alone would reach only `sh`, not its children.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    /// The group led by PID (the child was spawned with `process_group(0)`).
    fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw))
    }

    /// Kills the group now.
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH: the group is already empty. Nothing else can fail for our own child.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// The command ended: what it left in the background is its own business.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A task aborted when its handle is dropped, so that a dropped reload does not leave
/// its output readers behind.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    /// The task's result, or `None` if it did not finish within `limit` (it is then
    /// aborted).
    async fn join(mut self, limit: Duration) -> Option<T> {
        match tokio::time::timeout(limit, &mut self.0).await {
            Ok(Ok(v)) => Some(v),
            _ => None,
        }
    }
}

/// [`reload`] with a chosen timeout.
pub async fn run(cmd: &str, written: &Written, timeout: Duration) -> Result<String, CommandError> {
    let cert =
        std::path::absolute(&written.cert_path).unwrap_or_else(|_| written.cert_path.clone());
    let key = std::path::absolute(&written.key_path).unwrap_or_else(|_| written.key_path.clone());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CERTSYNC_DOMAIN", &written.domain)
        .env("CERTSYNC_CERT_FILE", &cert)
        .env("CERTSYNC_KEY_FILE", &key)
        // The folder of the files: with `--all`, the certificate's own folder.
        .env("CERTSYNC_DIR", cert.parent().unwrap_or(&cert))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            cmd: cmd.to_owned(),
            source,
        })?;
    let mut group = GroupGuard::new(child.id());
    let started = Instant::now();
    let target = written.target.clone();
    let stdout = child.stdout.take().map(|s| {
        let target = target.clone();
        AbortOnDrop(tokio::spawn(log_lines(s, target, "stdout")))
    });
    let stderr = child
        .stderr
        .take()
        .map(|s| AbortOnDrop(tokio::spawn(log_lines(s, target.clone(), "stderr"))));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            group.disarm();
            Some(status)
        }
        Ok(Err(source)) => {
            group.kill();
            return Err(CommandError::Wait {
                cmd: cmd.to_owned(),
                source,
            });
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            None
        }
    };
    // Whatever is left in the pipes; a leftover background process holding them is
    // not waited for.
    if let Some(h) = stdout {
        h.join(DRAIN).await;
    }
    let tail = match stderr {
        Some(h) => h.join(DRAIN).await.unwrap_or_default(),
        None => VecDeque::new(),
    };
    let stderr = if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", Vec::from(tail).join(" | "))
    };
    let took = started.elapsed().as_millis();
    match status {
        None => Err(CommandError::TimedOut {
            cmd: cmd.to_owned(),
            limit: timeout,
            stderr,
        }),
        Some(s) if s.success() => Ok(format!("ran {cmd:?} (exit 0 in {took} ms)")),
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(sig)) => format!(
                    "killed by signal {}",
                    Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?")
                ),
                _ => s.to_string(),
            };
            Err(CommandError::Failed {
                cmd: cmd.to_owned(),
                how,
                stderr,
            })
        }
    }
}

/// Logs every line of `r`; returns the last [`STDERR_TAIL`] lines.
async fn log_lines(
    r: impl AsyncRead + Unpin,
    target: String,
    stream: &'static str,
) -> VecDeque<String> {
    let mut lines = BufReader::new(r).lines();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                tracing::info!(target = %target, stream, "reload command: {line}");
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Ok(None) => break,
            Err(e) => {
                // Not UTF-8, or the pipe broke: say so once and stop reading.
                tracing::warn!(target = %target, stream, "reload command output unreadable: {e}");
                break;
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> Written {
        Written {
            target: "t".into(),
            domain: "turn.example.test".into(),
            cert_path: "out/fullchain.pem".into(),
            key_path: "out/privkey.pem".into(),
            leaf_der: vec![],
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A background grandchild in the same group, and the shell itself, both sleep.
        let cmd = format!(
            "(sleep 2; touch {m}) & echo started; sleep 30",
            m = marker.display()
        );
        let t = Instant::now();
        let e = rt()
            .block_on(run(&cmd, &written(), Duration::from_millis(300)))
            .unwrap_err()
            .to_string();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        assert!(e.contains("did not finish within 0.3 s"), "{e}");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "the background child outlived the timeout"
        );
    }

    /// The processes of group PGID that are still alive (zombies are dead, only
    /// waiting for their parent to reap them).
    fn alive_in_group(pgid: i32) -> Vec<String> {
        let mut alive = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            // After "PID (COMM)": state, ppid, pgrp.
            let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            if rest.get(2) == Some(&pgid.to_string().as_str()) && rest[0] != "Z" {
                alive.push(stat[..close + 1].to_owned());
            }
        }
        alive
    }

    #[test]
    fn a_dropped_reload_kills_the_commands_whole_group_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pgid");
        // The shell writes its PID (its group's id), then waits on a child of its
        // group; another one runs in the background.
        let cmd = format!(
            "echo $$ > {p}.tmp; mv {p}.tmp {p}; sleep 20 & sleep 20",
            p = pid_file.display()
        );
        let runtime = rt();
        let w = written();
        let pgid: i32 = runtime.block_on(async {
            let reload = run(&cmd, &w, Duration::from_secs(60));
            tokio::pin!(reload);
            // Poll the reload until the command is running, then drop it (as a
            // shutdown does, wherever the reload is).
            loop {
                tokio::select! {
                    r = &mut reload => panic!("the command ended: {r:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                if let Ok(text) = std::fs::read_to_string(&pid_file) {
                    let pgid: i32 = text.trim().parse().unwrap();
                    // Both sleeps are running (the shell may have become the second).
                    if alive_in_group(pgid).len() >= 2 {
                        break pgid;
                    }
                }
            }
        });
        // The future was dropped when the async block returned: the group was killed
        // then, without waiting for anything.
        let t = Instant::now();
        while !alive_in_group(pgid).is_empty() && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            alive_in_group(pgid),
            Vec::<String>::new(),
            "processes of the reload command's group outlived its dropped future"
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        drop(runtime);
    }

    #[test]
    fn paths_are_absolute_and_stderr_is_quoted() {
        let e = rt()
            .block_on(run(
                "case $CERTSYNC_CERT_FILE in /*) ;; *) exit 9;; esac; echo one >&2; echo two >&2; exit 3",
                &written(),
                Duration::from_secs(5),
            ))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit code 3"), "{e}");
        assert!(e.contains("stderr: one | two"), "{e}");
    }
}
