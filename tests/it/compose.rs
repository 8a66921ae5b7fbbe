//! `docker/compose.yml`, brought up for real with Debian's docker-compose: Traefik gets
//! the certificate from Pebble, certsync (the image `docker/Dockerfile` builds) copies
//! it through the Docker API filter's eyes, coturn starts only once certsync is healthy
//! and serves it, and after a renewal coturn serves the new one without a restart.
//! `docker/compose.test.yml` swaps in the images built here and Pebble for Let's
//! Encrypt; everything else is the file users copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::bin::*;
use crate::support::docker::{certsync_image, docker, ensure_coturn_image};
use crate::support::{file_serial, openssl_bin, served_serial, traefik_bin};

const DOMAIN: &str = "turn.example.test";

/// A compose project of its own, taken down with its volumes however the test ends.
struct Stack {
    project: String,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn docker_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
    }

    /// `docker-compose -p PROJECT -f compose.yml -f compose.test.yml ARGS`
    fn compose_output(&self, args: &[&str]) -> Output {
        let dir = Stack::docker_dir();
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(dir.join("compose.yml"))
            .arg("-f")
            .arg(dir.join("compose.test.yml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose (Debian package docker-compose) is on the machines")
    }

    fn compose(&self, args: &[&str]) -> String {
        let out = self.compose_output(args);
        assert!(
            out.status.success(),
            "docker-compose {} failed ({}): {}{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn logs(&self) -> String {
        let out = self.compose_output(&["logs", "--no-color", "--tail", "60"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
    }

    fn volume_path(&self, volume: &str) -> PathBuf {
        let name = format!("{}_{volume}", self.project);
        PathBuf::from(docker(&[
            "volume",
            "inspect",
            "-f",
            "{{.Mountpoint}}",
            &name,
        ]))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("compose logs:\n{}", self.logs());
        }
        let _ = self.compose_output(&["down", "-v", "--remove-orphans", "-t", "2"]);
    }
}

/// Pebble's configuration and its listener's certificate, valid for the service name
/// `pebble` on the project's network.
fn pebble_files(dir: &Path) {
    let pebble = dir.join("pebble");
    std::fs::create_dir_all(&pebble).unwrap();
    let status = Command::new(openssl_bin())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=pebble"])
        .args(["-addext", "subjectAltName=DNS:pebble"])
        .arg("-keyout")
        .arg(pebble.join("listener.key"))
        .arg("-out")
        .arg(pebble.join("listener.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl req for Pebble's listener");
    let config = serde_json::json!({"pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/pebble/listener.pem",
        "privateKey": "/pebble/listener.key",
        "httpPort": 5002,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        // 20 minutes: with Traefik's certificatesDuration of 1 hour, always due.
        "certificateValidityPeriod": 1200,
    }});
    std::fs::write(pebble.join("pebble.json"), config.to_string()).unwrap();
}

fn compose_test_images() {
    let script = Stack::docker_dir().join("compose-test-images.sh");
    let out = Command::new("sh")
        .arg(&script)
        .env("CERTSYNC_TRAEFIK", traefik_bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls what coturn serves on ADDR until CHECK accepts it.
fn wait_served(
    addr: &str,
    timeout: Duration,
    what: &str,
    stack: &Stack,
    check: impl Fn(&str) -> bool,
) -> String {
    let end = Instant::now() + timeout;
    loop {
        if let Some(serial) = served_serial(addr, DOMAIN) {
            if check(&serial) {
                return serial;
            }
        }
        if Instant::now() > end {
            panic!("{what}: not within {timeout:?}\n{}", stack.logs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn compose_stack_serves_the_certificate_then_its_renewal_without_restarting_coturn() {
    let image = certsync_image();
    ensure_coturn_image();
    compose_test_images();

    let dir = tempfile::tempdir().unwrap();
    pebble_files(dir.path());
    let (turn_port, turns_port, https_port) = (free_port(), free_port(), free_port());
    let project = format!("certsyncit{}x{turns_port}", std::process::id());
    let env = [
        ("CERTSYNC_TEST_DIR", dir.path().display().to_string()),
        ("CERTSYNC_IMAGE", image.to_string()),
        ("ACME_CA_SERVER", "https://pebble:14000/dir".into()),
        ("ACME_CERT_HOURS", "1".into()),
        ("ACME_EMAIL", "ops@example.test".into()),
        ("TURN_DOMAIN", DOMAIN.into()),
        ("HTTPS_PUBLISH", format!("127.0.0.1:{https_port}")),
        ("TURN_LISTEN_IP", "127.0.0.1".into()),
        ("TURN_PORT", turn_port.to_string()),
        ("TURNS_PORT", turns_port.to_string()),
        ("RELOAD_LABEL", project.clone()),
    ];
    let stack = Stack {
        project,
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        _dir: dir,
    };

    let up = Instant::now();
    stack.compose(&["up", "-d"]);
    let addr = format!("127.0.0.1:{turns_port}");
    let first = wait_served(
        &addr,
        Duration::from_secs(120),
        "coturn serving TLS",
        &stack,
        |_| true,
    );
    eprintln!(
        "docker-compose up to coturn serving TLS: {:.1} s",
        up.elapsed().as_secs_f64()
    );
    let certs = stack.volume_path("certs");
    assert_eq!(first, file_serial(&certs.join("fullchain.pem")));
    let coturn = stack.container("coturn");
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &coturn]);

    // Traefik checks renewals at start-up: a restart renews at once what is due (all
    // of it, with 20-minute certificates and a 1-hour certificatesDuration).
    let restarted = Instant::now();
    stack.compose(&["restart", "-t", "2", "traefik"]);
    let renewed = wait_served(
        &addr,
        Duration::from_secs(120),
        "coturn serving the renewal",
        &stack,
        |s| s != first,
    );
    eprintln!(
        "traefik restart to coturn serving the renewal: {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(renewed, file_serial(&certs.join("fullchain.pem")));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &coturn]),
        started,
        "coturn was signalled, not restarted"
    );
    let health = docker(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        &stack.container("certsync"),
    ]);
    assert_eq!(health, "healthy");
}
