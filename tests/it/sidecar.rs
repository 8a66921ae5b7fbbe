//! certsync as a sidecar container, from the image `docker/build-image.sh` makes: it
//! reads acme.json from a mounted folder, writes coturn's files to another, and signals
//! a labelled coturn container through the mounted Docker socket.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use crate::support::bin::*;
use crate::support::docker::{docker, docker_output, CoturnContainer};
use crate::support::{file_serial, served_serial};

const IMAGE: &str = "certsync-test/certsync:local";

/// The image, from the binary under test (built once per test run).
fn image() -> &'static str {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/build-image.sh");
        let out = std::process::Command::new("sh")
            .arg(&script)
            .args(["--binary", env!("CARGO_BIN_EXE_certsync"), IMAGE])
            .output()
            .expect("run docker/build-image.sh");
        assert!(
            out.status.success(),
            "build-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// Removes the container when the test ends, however it ends.
struct Removed(String);
impl Drop for Removed {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.0]);
    }
}

#[test]
fn the_image_runs_once_with_numeric_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    std::fs::create_dir(&out).unwrap();
    let fixtures = fixture("acme.json").parent().unwrap().to_owned();
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{}:/letsencrypt:ro", fixtures.display()),
        "-v",
        &format!("{}:/certs", out.display()),
        image(),
        "--once",
        "--acme",
        "/letsencrypt/acme.json",
        "--domain",
        "turn.example.test",
        "--out-dir",
        "/certs",
        "--owner",
        "65534:65534",
        "--key-mode",
        "0640",
    ]);
    let key = std::fs::metadata(out.join("privkey.pem")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (key.uid(), key.gid(), key.mode() & 0o777),
        (65534, 65534, 0o640)
    );
}

#[test]
fn the_sidecar_signals_coturn_by_label_after_a_rewrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("letsencrypt"), tmp.path().join("certs"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let (one, two) = two_versions();
    std::fs::write(src.join("acme.json"), &one).unwrap();

    let id = format!("{}-{}", std::process::id(), free_port());
    let (label_key, label_value) = ("certsync-sidecar-test", id.as_str());
    let tls_port = free_port();
    let name = format!("certsync-sidecar-{id}");
    let _removed = Removed(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        &format!("{}:/letsencrypt:ro", src.display()),
        "-v",
        &format!("{}:/certs", out.display()),
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        image(),
        "--acme",
        "/letsencrypt/acme.json",
        "--domain",
        "turn.example.test",
        "--resolver",
        "le",
        "--out-dir",
        "/certs",
        "--metrics-listen",
        "off",
        "--docker-label",
        &format!("{label_key}={label_value}"),
        "--verify-tls",
        &format!("127.0.0.1:{tls_port}"),
    ]);
    // coturn opens its TLS listener only if the files exist when it starts.
    wait_until(Duration::from_secs(10), "the sidecar's first pass", || {
        out.join("privkey.pem").exists()
    });
    let coturn = CoturnContainer::start(
        &format!("coturn-sidecar-{id}"),
        &[(label_key, label_value)],
        &out,
        tls_port,
    );
    let started = coturn.started_at();

    std::fs::write(src.join("acme.json"), &two).unwrap();
    let logs = || {
        docker(&["logs", &name]) + &String::from_utf8_lossy(&docker_output(&["logs", &name]).stderr)
    };
    wait_until(Duration::from_secs(20), "the reload to be verified", || {
        logs().contains("serves the new certificate")
    });
    assert_eq!(
        served_serial(&format!("127.0.0.1:{tls_port}"), "turn.example.test").as_deref(),
        Some(file_serial(&out.join("fullchain.pem")).as_str())
    );
    assert_eq!(coturn.started_at(), started, "signalled, not restarted");
}

#[test]
fn the_compose_example_is_valid() {
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yml");
    let out = std::process::Command::new("docker-compose")
        .args(["-f", compose.to_str().unwrap(), "config", "-q"])
        .output()
        .expect("docker-compose (Debian package docker-compose) is on the machines");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
