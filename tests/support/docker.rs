//! Real coturn in Docker, and a TCP proxy to the Docker socket, for integration tests.
//!
//! * [`certsync_image`] builds certsync's own image from `docker/Dockerfile`, on base
//!   images made here from Debian (`docker/local-bases.sh`), once per test run.
//! * [`ensure_coturn_image`] builds `certsync-test/coturn:local` once (no registry:
//!   `docker/coturn-test-image.sh`, FROM scratch + the host's turnserver and libraries).
//! * [`CoturnContainer::start`] runs it with host networking on 127.0.0.1, the
//!   certificate directory mounted read-only at /certs (`fullchain.pem`, `privkey.pem`);
//!   dropping it runs `docker rm -f`.
//! * [`SocketProxy`] is `socat TCP-LISTEN:PORT,bind=127.0.0.1,... UNIX-CONNECT:/var/run/docker.sock`,
//!   for `DOCKER_HOST=tcp://127.0.0.1:PORT` and for "the engine went away" tests.
//!
//! Containers run with `--init` (Docker's tini as PID 1, forwarding signals): as
//! PID 1 turnserver ignores SIGTERM, so `docker stop`/`restart` would wait the whole
//! stop timeout (10 s). SIGUSR2 reaches turnserver either way.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The local test image.
pub const COTURN_IMAGE: &str = "certsync-test/coturn:local";
/// Every container started here has this label (`docker rm -f $(docker ps -aq --filter label=certsync-test)`).
pub const TEST_LABEL: &str = "certsync-test";

/// `docker/coturn-test-image.sh` of this crate.
pub fn image_script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/coturn-test-image.sh")
}

/// Runs `docker ARGS`; panics unless it succeeds. Returns trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = run_ok(Command::new("docker").args(args).stdin(Stdio::null()));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `docker ARGS` and returns whatever happened.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"))
}

static IMAGE_READY: Mutex<bool> = Mutex::new(false);

/// certsync's image, as `docker/Dockerfile` builds it from this checkout.
pub const CERTSYNC_IMAGE: &str = "certsync-test/certsync:local";

/// Builds [`CERTSYNC_IMAGE`] once per test process: the base images first
/// (`docker/local-bases.sh`, a few minutes the first time on a machine, then kept),
/// then `docker build` with them. Docker's layer cache keeps the dependencies'
/// build while Cargo.toml and Cargo.lock are unchanged, so a later run rebuilds
/// certsync alone (~1 min), or nothing.
pub fn certsync_image() -> &'static str {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return CERTSYNC_IMAGE;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bases = run_logged(
        Command::new("sh").arg(repo.join("docker/local-bases.sh")),
        "docker/local-bases.sh",
    );
    let mut names = bases.lines();
    let (builder, runtime) = (names.next().unwrap_or(""), names.next().unwrap_or(""));
    let started = Instant::now();
    run_logged(
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-f"])
            .arg(repo.join("docker/Dockerfile"))
            .args(["--build-arg", &format!("BUILDER_IMAGE={builder}")])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={runtime}")])
            .args(["-t", CERTSYNC_IMAGE])
            .arg(repo),
        "docker build -f docker/Dockerfile",
    );
    eprintln!(
        "{CERTSYNC_IMAGE}: built in {:.0?}, {}",
        started.elapsed(),
        docker(&["image", "inspect", "-f", "{{.Size}} bytes", CERTSYNC_IMAGE])
    );
    *built = true;
    CERTSYNC_IMAGE
}

/// Runs CMD to completion; panics with its output unless it succeeds. Returns stdout.
fn run_logged(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds [`COTURN_IMAGE`] unless it exists (once per test process; ~5 s the first time).
pub fn ensure_coturn_image() {
    let mut ready = IMAGE_READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return;
    }
    run_ok(
        Command::new(image_script_path())
            .arg(COTURN_IMAGE)
            .stdin(Stdio::null()),
    );
    *ready = true;
}

use super::{free_port, run_ok, wait_port};

/// A coturn container (host network, 127.0.0.1), removed with `docker rm -f` on drop.
pub struct CoturnContainer {
    pub name: String,
    /// turnserver's TLS listener on 127.0.0.1.
    pub tls_port: u16,
}

impl CoturnContainer {
    /// `docker run -d --init --network host` of [`COTURN_IMAGE`] named NAME, with the
    /// given labels (plus `certsync-test=1`), CERTS_DIR mounted read-only at /certs and
    /// `--cert=/certs/fullchain.pem --pkey=/certs/privkey.pem`, TLS on
    /// 127.0.0.1:TLS_PORT. Removes a leftover container of the same name first, builds
    /// the image if needed and waits (10 s) until the TLS port accepts connections.
    ///
    /// Mount the directory, not the files: a file bind mount keeps the old inode when
    /// the file is replaced by rename.
    pub fn start(
        name: &str,
        labels: &[(&str, &str)],
        certs_dir: &Path,
        tls_port: u16,
    ) -> CoturnContainer {
        let c = CoturnContainer::run(name, labels, certs_dir, tls_port);
        if !wait_port(tls_port, Duration::from_secs(10)) {
            panic!(
                "coturn container {name}: TLS port {tls_port} not listening after 10 s; state {}; logs:\n{}",
                c.state(),
                c.logs()
            );
        }
        c
    }

    /// [`CoturnContainer::start`] without waiting for TLS: for a coturn started before
    /// its certificate files exist, which opens no TLS listener. Waits (10 s) for the
    /// plain listener instead.
    pub fn run(
        name: &str,
        labels: &[(&str, &str)],
        certs_dir: &Path,
        tls_port: u16,
    ) -> CoturnContainer {
        ensure_coturn_image();
        let _ = docker_output(&["rm", "-f", name]);
        let plain_port = free_port();
        let certs = std::fs::canonicalize(certs_dir)
            .unwrap_or_else(|e| panic!("certs dir {}: {e}", certs_dir.display()));
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--init".into(),
            "--network".into(),
            "host".into(),
            "--name".into(),
            name.into(),
            "--label".into(),
            format!("{TEST_LABEL}=1"),
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.extend([
            "-v".to_string(),
            format!("{}:/certs:ro", certs.display()),
            COTURN_IMAGE.to_string(),
            "-n".into(), // no config file: everything below
            "--listening-ip=127.0.0.1".into(),
            format!("--listening-port={plain_port}"),
            format!("--tls-listening-port={tls_port}"),
            "--alt-listening-port=0".into(),
            "--alt-tls-listening-port=0".into(),
            "--cert=/certs/fullchain.pem".into(),
            "--pkey=/certs/privkey.pem".into(),
            "--realm=example.test".into(),
            "--no-cli".into(),
            "--log-file=stdout".into(),
            "--simple-log".into(),
            "--min-port=49152".into(),
            "--max-port=65535".into(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs);
        let c = CoturnContainer {
            name: name.to_string(),
            tls_port,
        };
        if !wait_port(plain_port, Duration::from_secs(10)) {
            panic!(
                "coturn container {name}: port {plain_port} not listening after 10 s; state {}; logs:\n{}",
                c.state(),
                c.logs()
            );
        }
        c
    }

    /// `127.0.0.1:<tls_port>`, for `served_serial` and `--verify-tls`.
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// `.State.StartedAt` (RFC 3339, changes on every (re)start).
    pub fn started_at(&self) -> String {
        self.inspect("{{.State.StartedAt}}")
    }

    /// `.State.Status`: "running", "exited", "restarting", ...
    pub fn state(&self) -> String {
        self.inspect("{{.State.Status}}")
    }

    /// `docker inspect -f FORMAT NAME` (empty string if the container is gone).
    pub fn inspect(&self, format: &str) -> String {
        let out = docker_output(&["inspect", "-f", format, &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// turnserver's log (stdout and stderr of the container).
    pub fn logs(&self) -> String {
        let out = docker_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for CoturnContainer {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// `socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:SOCKET`: the
/// Docker Engine API on TCP. Killed (with the children serving open connections) by
/// [`SocketProxy::stop`] or on drop; new connections are then refused at once.
pub struct SocketProxy {
    port: u16,
    child: Option<Child>,
}

impl SocketProxy {
    /// Proxy to `/var/run/docker.sock`.
    pub fn start() -> SocketProxy {
        SocketProxy::start_to(Path::new("/var/run/docker.sock"))
    }

    /// Proxy to the Unix socket SOCKET; waits (5 s) until it listens.
    pub fn start_to(socket: &Path) -> SocketProxy {
        SocketProxy::start_on(free_port(), socket)
    }

    /// After [`SocketProxy::stop`]: the proxy to `/var/run/docker.sock` back on the
    /// same port, so a client configured with [`SocketProxy::docker_host`] finds it.
    pub fn restart(&mut self) {
        self.stop();
        *self = SocketProxy::start_on(self.port, Path::new("/var/run/docker.sock"));
    }

    fn start_on(port: u16, socket: &Path) -> SocketProxy {
        let child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0) // own group: stop() kills the forked children too
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run socat (apt-get install socat): {e}"));
        let mut p = SocketProxy {
            port,
            child: Some(child),
        };
        if !wait_port(port, Duration::from_secs(5)) {
            p.stop();
            panic!("socat did not listen on 127.0.0.1:{port}");
        }
        p
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "tcp://127.0.0.1:PORT", for DOCKER_HOST.
    pub fn docker_host(&self) -> String {
        format!("tcp://{}", self.addr())
    }

    /// Kills socat and its per-connection children, and reaps socat.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // socat leads its own process group (see start_to): the group is socat
            // and every child serving a connection. It cannot be gone: socat is our
            // unreaped child, so the group exists at least as long as it does.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name unique to this test process and tag (containers, labels).
pub fn unique(tag: &str) -> String {
    format!("certsync-it-{tag}-{}", std::process::id())
}
