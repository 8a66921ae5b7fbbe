//! What the reload tests share: running `certsync --once` on the fixtures, a real
//! coturn (as a plain child process, or its config for a systemd unit), and reading
//! which certificate a TLS port serves with `openssl s_client` (independent of the
//! code under test).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::bin::{certsync_env, fixture, Run};
pub use crate::support::docker::{free_port, wait_port};

/// The domain both fixture resolvers hold: `le` (RSA) and `le-ec` (EC). Switching
/// `--resolver` between them changes the files, as a renewal would.
pub const DOMAIN: &str = "turn.example.test";
pub const PENDING: &str = ".certsync-reload-pending.fullchain.pem";

/// `certsync --once --acme fixtures/acme.json --domain turn.example.test --resolver R
/// --out-dir OUT EXTRA...` with ENV added.
pub fn once(out: &Path, resolver: &str, extra: &[&str], env: &[(String, String)]) -> Run {
    let acme = fixture("acme.json");
    let mut args = vec![
        "--once",
        "--acme",
        acme.to_str().unwrap(),
        "--domain",
        DOMAIN,
        "--resolver",
        resolver,
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = Instant::now();
    let run = certsync_env(&args, &env);
    eprintln!(
        "--- certsync {} ({} ms, exit {}):\n{}",
        extra.join(" "),
        started.elapsed().as_millis(),
        run.code,
        run.stderr.trim_end()
    );
    run
}

/// Prints and returns "N" of "serves the new certificate N ms after the reload began".
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

/// Serial (upper-case hex, as openssl prints it) of the first certificate of a PEM file.
pub fn file_serial(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl x509");
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("openssl x509 -serial on {}: {s}", pem.display()))
        .to_string()
}

/// Serial of the certificate a fresh TLS handshake with 127.0.0.1:PORT presents.
pub fn served_serial(port: u16) -> Option<String> {
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", DOMAIN])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    use std::io::Write;
    x509.stdin.take()?.write_all(&s_client.stdout).ok()?;
    let out = x509.wait_with_output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim().strip_prefix("serial=").map(str::to_string)
}

/// Waits until 127.0.0.1:PORT serves WANT; panics with what it served instead.
#[track_caller]
pub fn wait_serial(port: u16, want: &str, timeout: Duration) {
    let end = Instant::now() + timeout;
    let mut last;
    loop {
        last = served_serial(port);
        if last.as_deref() == Some(want) || Instant::now() >= end {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last.as_deref(),
        Some(want),
        "serial served on 127.0.0.1:{port}"
    );
}

/// turnserver's configuration: TLS on 127.0.0.1:TLS_PORT with CERTS/fullchain.pem and
/// CERTS/privkey.pem, logs and state in DIR.
pub fn coturn_conf(dir: &Path, plain_port: u16, tls_port: u16, certs: &Path) -> String {
    format!(
        "listening-ip=127.0.0.1\n\
         listening-port={plain_port}\n\
         tls-listening-port={tls_port}\n\
         alt-listening-port=0\n\
         alt-tls-listening-port=0\n\
         cert={c}/fullchain.pem\n\
         pkey={c}/privkey.pem\n\
         realm=example.test\n\
         no-cli\n\
         simple-log\n\
         log-file={d}/turnserver.log\n\
         pidfile={d}/turnserver.pid\n\
         userdb={d}/turndb\n\
         min-port=49152\n\
         max-port=65535\n",
        c = certs.display(),
        d = dir.display()
    )
}

/// Writes DIR/turnserver.conf; returns its path and the TLS port.
pub fn write_coturn_conf(dir: &Path, certs: &Path) -> (PathBuf, u16) {
    let tls_port = free_port();
    let conf = dir.join("turnserver.conf");
    fs::write(&conf, coturn_conf(dir, free_port(), tls_port, certs)).unwrap();
    (conf, tls_port)
}

/// `turnserver -c CONF` as a child of the test, killed on drop.
pub struct CoturnProcess {
    child: Child,
    pub tls_port: u16,
    dir: PathBuf,
}

impl CoturnProcess {
    /// Starts coturn on CERTS (the files must exist) and waits for its TLS port.
    pub fn start(dir: &Path, certs: &Path) -> CoturnProcess {
        let (conf, tls_port) = write_coturn_conf(dir, certs);
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run turnserver (apt-get install coturn)");
        let c = CoturnProcess {
            child,
            tls_port,
            dir: dir.to_path_buf(),
        };
        assert!(
            wait_port(tls_port, Duration::from_secs(10)),
            "turnserver TLS port {tls_port}; log:\n{}",
            c.log()
        );
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }
}

impl Drop for CoturnProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name unique to this test process and tag (containers, labels).
pub fn unique(tag: &str) -> String {
    format!("certsync-it-{tag}-{}", std::process::id())
}
