//! Reload by running a command: `sh -c CMD`.
//!
//! The command gets `CERTSYNC_DOMAIN`, `CERTSYNC_CERT_FILE` and `CERTSYNC_KEY_FILE`
//! (absolute paths), no standard input, and its own process group. Each line it
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

use super::{ReloadError, Written};

/// How long a reload command may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of standard error quoted in the error of a failed command.
const STDERR_TAIL: usize = 5;
/// After the command ended, how long its output may still take to drain (a background
/// child that kept the pipe open is not waited for).
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `sh -c cmd` with CERTSYNC_DOMAIN, CERTSYNC_CERT_FILE and CERTSYNC_KEY_FILE set.
pub async fn reload(cmd: &str, written: &Written) -> Result<String, ReloadError> {
    run(cmd, written, TIMEOUT).await
}

/// [`reload`] with a chosen timeout.
pub async fn run(cmd: &str, written: &Written, timeout: Duration) -> Result<String, ReloadError> {
    let err = |m: String| ReloadError::Command(m);
    let cert =
        std::path::absolute(&written.cert_path).unwrap_or_else(|_| written.cert_path.clone());
    let key = std::path::absolute(&written.key_path).unwrap_or_else(|_| written.key_path.clone());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CERTSYNC_DOMAIN", &written.domain)
        .env("CERTSYNC_CERT_FILE", &cert)
        .env("CERTSYNC_KEY_FILE", &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot run sh -c {cmd:?}: {e}")))?;
    let pid = child.id();
    let started = Instant::now();
    let target = written.target.clone();
    let stdout = child.stdout.take().map(|s| {
        let target = target.clone();
        tokio::spawn(log_lines(s, target, "stdout"))
    });
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(log_lines(s, target.clone(), "stderr")));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            kill_group(pid);
            return Err(err(format!("waiting for {cmd:?}: {e}")));
        }
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            None
        }
    };
    // Whatever is left in the pipes; a leftover background process holding them is
    // not waited for.
    if let Some(mut h) = stdout {
        if tokio::time::timeout(DRAIN, &mut h).await.is_err() {
            h.abort();
        }
    }
    let tail = match stderr {
        Some(mut h) => match tokio::time::timeout(DRAIN, &mut h).await {
            Ok(Ok(tail)) => tail,
            _ => {
                h.abort();
                VecDeque::new()
            }
        },
        None => VecDeque::new(),
    };
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", Vec::from(tail).join(" | "))
    };
    let took = started.elapsed().as_millis();
    match status {
        None => Err(err(format!(
            "{cmd:?} did not finish within {} s and was killed (with its process group){tail}",
            timeout.as_secs_f64()
        ))),
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
            Err(err(format!("{cmd:?} failed with {how}{tail}")))
        }
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child leads its own group (process_group(0)): this reaches its children too.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
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
