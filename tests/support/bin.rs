//! Running the built `certsync` binary, and the fixture files it reads.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub use super::{fixture, free_port};

/// The domain both resolvers of `fixtures/acme.json` hold: `le` (RSA) and `le-ec` (EC).
/// Switching `--resolver` between them changes the files, as a renewal would.
pub const DOMAIN: &str = "turn.example.test";

/// The marker certsync leaves in an out dir while a reload is owed.
pub const PENDING: &str = ".certsync-reload-pending.fullchain.pem";

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless stderr or stdout contains every piece.
    #[track_caller]
    pub fn expect_says(&self, pieces: &[&str]) -> &Run {
        let all = format!("{}{}", self.stdout, self.stderr);
        for p in pieces {
            assert!(all.contains(p), "output lacks {p:?}:\n{all}");
        }
        self
    }
}

/// A `certsync` command with no CERTSYNC_* or certbot variables inherited, so the
/// developer's environment cannot change a test. It runs through `sh -c exec`, which
/// keeps the pid, so that WATCHDOG_PID can name certsync's own pid as systemd does.
pub fn command() -> Command {
    command_under(&[])
}

/// [`command`] run by `prefix` (a program and its arguments, e.g. `setpriv ... --`).
pub fn command_under(prefix: &[&str]) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg("sh");
            cmd
        }
        None => Command::new("sh"),
    };
    cmd.args([
        "-c",
        "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_certsync"),
    ]);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CERTSYNC_") || k.starts_with("RENEWED_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn certsync(args: &[&str]) -> Run {
    Run::from(command().args(args).output().expect("run certsync"))
}

pub fn certsync_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(
        command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run certsync"),
    )
}

/// `certsync --once --acme ACME --domain DOMAIN --out-dir OUT EXTRA...`
pub fn once(acme: &Path, domain: &str, out: &Path, extra: &[&str]) -> Run {
    once_env(acme, domain, out, extra, &[])
}

/// [`once`] with ENV added.
pub fn once_env(
    acme: &Path,
    domain: &str,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut args = vec![
        "--once",
        "--acme",
        acme.to_str().unwrap(),
        "--domain",
        domain,
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    certsync_env(&args, env)
}

/// Per file name: content, mode, owner and inode.
pub type DirState = BTreeMap<String, (Vec<u8>, u32, u32, u64)>;

/// The writers' lock file certsync keeps in each out dir once it has written there.
pub const LOCK: &str = ".certsync.lock";

/// Every file in a folder, to prove nothing moved; the lock file aside, which stays,
/// empty, from the first write on.
pub fn dir_state(dir: &Path) -> DirState {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != LOCK)
        .map(|e| {
            let m = e.metadata().unwrap();
            let content = std::fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                (content, m.mode() & 0o7777, m.uid(), m.ino()),
            )
        })
        .collect()
}

/// An acme.json as a JSON value, to derive broken variants from a real one.
pub struct Acme(pub Value);

impl Acme {
    pub fn load(path: &Path) -> Acme {
        Acme(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
    }

    /// The entry of `resolver` whose main domain is `main`.
    pub fn entry(&mut self, resolver: &str, main: &str) -> &mut Value {
        self.0[resolver]["Certificates"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("no resolver {resolver}"))
            .iter_mut()
            .find(|c| c["domain"]["main"] == main)
            .unwrap_or_else(|| panic!("no {main} in {resolver}"))
    }

    /// Gives entry `main` of `resolver` the key of entry `donor` (resolver, main), and
    /// keeps its chain: a pair that does not match, as a botched restore leaves it.
    pub fn swap_in_key(&mut self, resolver: &str, main: &str, donor: (&str, &str)) {
        let key = self.entry(donor.0, donor.1)["key"].clone();
        self.entry(resolver, main)["key"] = key;
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, serde_json::to_vec_pretty(&self.0).unwrap()).unwrap();
    }
}

/// Decodes a base64 field of an acme.json entry.
pub fn b64_field(s: &Value) -> Vec<u8> {
    super::b64_decode(s.as_str().expect("a string field"))
}

pub fn b64_encode(bytes: &[u8]) -> Value {
    Value::String(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        bytes,
    ))
}

/// Polls `f` every 5 ms until it holds; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: std::time::Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A `certsync` daemon running in the background; killed on drop.
pub struct Daemon {
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_from(command(), args, env)
    }

    /// [`Daemon::start`] from a prepared command, e.g. one run under `setpriv`.
    pub fn start_from(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("certsync.log");
        let child = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start certsync");
        Daemon {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `piece`.
    #[track_caller]
    pub fn wait_log(&self, piece: &str, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        while !self.log().contains(piece) {
            assert!(
                start.elapsed() < timeout,
                "no {piece:?} in the log after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over plain HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    // A listener that never accepts (the kernel queues the connection) must fail the
    // test, not hang it: no answer reads as status 0.
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, String::new());
    }
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Two valid acme.json contents that differ only in which certificate `le` holds for
/// turn.example.test: the RSA one (as issued) or the EC one (swapped in). Switching
/// between them is a renewal as far as a reader can tell.
pub fn two_versions() -> (Vec<u8>, Vec<u8>) {
    let original = std::fs::read(fixture("acme.json")).unwrap();
    let mut acme = Acme::load(&fixture("acme.json"));
    let ec = acme.entry("le-ec", "turn.example.test").clone();
    let le = acme.entry("le", "turn.example.test");
    le["certificate"] = ec["certificate"].clone();
    le["key"] = ec["key"].clone();
    le["domain"] = serde_json::json!({"main": "turn.example.test"});
    (original, serde_json::to_vec_pretty(&acme.0).unwrap())
}

/// Rewrites a file the way Traefik does: truncate in place, then write (same inode).
pub fn rewrite_in_place(path: &Path, content: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, content).unwrap();
}

/// `certsync --once --acme fixtures/acme.json --domain turn.example.test --resolver R
/// --out-dir OUT EXTRA...` with ENV added; its output is echoed for the test log.
pub fn once_from(resolver: &str, out: &Path, extra: &[&str], env: &[(String, String)]) -> Run {
    let mut args = vec!["--resolver", resolver];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = std::time::Instant::now();
    let run = once_env(&fixture("acme.json"), DOMAIN, out, &args, &env);
    eprintln!(
        "--- certsync {} ({} ms, exit {}):\n{}",
        extra.join(" "),
        started.elapsed().as_millis(),
        run.code,
        run.stderr.trim_end()
    );
    run
}

/// Prints and returns N of "serves the new certificate N ms after the reload began".
pub fn report_timing(method: &str, run: &Run) -> u128 {
    let text = format!("{}{}", run.stdout, run.stderr);
    let ms = text
        .split("serves the new certificate ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no timing in the output:\n{text}"));
    eprintln!(
        "[timing] {method}: coturn serves the new certificate {ms} ms after the reload began"
    );
    ms
}
