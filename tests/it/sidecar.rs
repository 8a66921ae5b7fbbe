//! certsync as a sidecar container, from the image `docker/Dockerfile` builds: it runs
//! as 65532 with only CHOWN, FOWNER and DAC_READ_SEARCH, reads acme.json from a mounted folder,
//! writes coturn's files to another, and signals a labelled coturn container through
//! the mounted Docker socket.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::bin::*;
use crate::support::docker::{certsync_image as image, docker, docker_output, CoturnContainer};
use crate::support::{file_serial, run_ok, served_serial};

/// The image's user.
const NONROOT: u32 = 65532;

/// The capabilities the image's README asks for, and no others.
const CAPS: [&str; 8] = [
    "--cap-drop",
    "ALL",
    "--cap-add",
    "CHOWN",
    "--cap-add",
    "FOWNER",
    "--cap-add",
    "DAC_READ_SEARCH",
];

/// An out dir the image's user may write into, as a volume would be.
fn out_dir_for_nonroot(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    nix::unistd::chown(path, Some(NONROOT.into()), Some(NONROOT.into())).unwrap();
}

/// Removes the container when the test ends, however it ends.
struct Removed(String);
impl Drop for Removed {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.0]);
    }
}

#[test]
fn the_image_reads_a_root_only_acme_json_and_chowns_as_nonroot() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("letsencrypt"), tmp.path().join("certs"));
    out_dir_for_nonroot(&out);
    // As Traefik keeps it: root's, 0600, in a folder only root may list.
    std::fs::create_dir(&src).unwrap();
    std::fs::copy(fixture("acme.json"), src.join("acme.json")).unwrap();
    std::fs::set_permissions(src.join("acme.json"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&src, PermissionsExt::from_mode(0o700)).unwrap();
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend(CAPS);
    let (src_mount, out_mount) = (
        format!("{}:/letsencrypt:ro", src.display()),
        format!("{}:/certs", out.display()),
    );
    args.extend(["-v", &src_mount, "-v", &out_mount, image()]);
    docker(
        &[
            &args[..],
            &[
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
            ],
        ]
        .concat(),
    );
    let key = std::fs::metadata(out.join("privkey.pem")).unwrap();
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
    out_dir_for_nonroot(&out);
    // The socket's group lets the image's user talk to the engine.
    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .unwrap()
        .gid()
        .to_string();
    let (one, two) = two_versions();
    std::fs::write(src.join("acme.json"), &one).unwrap();

    let id = format!("{}-{}", std::process::id(), free_port());
    let (label_key, label_value) = ("certsync-sidecar-test", id.as_str());
    let tls_port = free_port();
    let name = format!("certsync-sidecar-{id}");
    let _removed = Removed(name.clone());
    let (src_mount, out_mount, label, verify) = (
        format!("{}:/letsencrypt:ro", src.display()),
        format!("{}:/certs", out.display()),
        format!("{label_key}={label_value}"),
        format!("127.0.0.1:{tls_port}"),
    );
    let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
    args.extend(CAPS);
    args.extend([
        "--group-add",
        &socket_gid,
        "-v",
        &src_mount,
        "-v",
        &out_mount,
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
        &label,
        "--verify-tls",
        &verify,
    ]);
    docker(&args);
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
fn the_image_keeps_metrics_on_loopback_and_needs_its_capabilities_granted() {
    let image = image();
    let config = docker(&["image", "inspect", "-f", "{{json .Config}}", image]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let env = config["Env"].to_string();
    assert!(!env.contains("CERTSYNC_METRICS_LISTEN"), "{env}");
    assert!(config["ExposedPorts"].is_null(), "{config}");
    assert_eq!(config["User"], "65532:65532");

    // The binary carries DAC_READ_SEARCH, which Docker does not grant by default: the
    // kernel refuses to start it rather than run it without (README troubleshooting).
    let out = docker_output(&["run", "--rm", "--network", "none", image, "--version"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("operation not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut granted = vec!["run", "--rm", "--network", "none"];
    granted.extend(CAPS);
    granted.extend([image, "--version"]);
    assert!(docker(&granted).starts_with("certsync "));
}

#[test]
fn the_compose_example_is_valid() {
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yml");
    run_ok(std::process::Command::new("docker-compose").args([
        "-f",
        compose.to_str().unwrap(),
        "config",
        "-q",
    ]));
}
