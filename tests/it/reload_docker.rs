//! Reload through the Docker Engine API, against real coturn containers (image built
//! from local files) on the machine's engine. The engine itself is never stopped: an
//! unreachable API is a socat proxy of its socket that the test stops.

use std::time::Duration;

use crate::support::bin::{once_from, report_timing, DOMAIN, PENDING};
use crate::support::docker::{unique, CoturnContainer, SocketProxy};
use crate::support::stun::StunTls;
use crate::support::{file_serial, free_port, served_serial, wait_served};

const ONEOFF: &str = "com.docker.compose.oneoff";

/// By name. Signal mode: new serial, same StartedAt, and a connection opened before
/// the rotation still gets answers. Restart mode: a new StartedAt, that connection gone.
#[test]
fn container_signal_keeps_its_calls_restart_drops_them() {
    let out = tempfile::tempdir().unwrap();
    let certs = out.path();
    once_from("le", certs, &[], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let name = unique("by-name");
    let c = CoturnContainer::start(&name, &[], certs, free_port());
    wait_served(&c.tls_addr(), DOMAIN, &old, Duration::from_secs(5));
    let started = c.started_at();

    let mut call = StunTls::connect(c.tls_port, DOMAIN).unwrap();
    let mapped = call.binding().expect("Binding before the rotation");
    assert_eq!(mapped, call.local_addr());

    let addr = c.tls_addr();
    let run = once_from(
        "le-ec",
        certs,
        &["--docker-container", &name, "--verify-tls", &addr],
        &[],
    );
    run.expect_code(0).expect_says(&[
        &format!("sent SIGUSR2 to container {name}"),
        "serves the new certificate",
    ]);
    report_timing("docker signal", &run);
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_ne!(new, old);
    assert_eq!(served_serial(&c.tls_addr(), DOMAIN), Some(new));
    assert_eq!(
        c.started_at(),
        started,
        "SIGUSR2 must not restart the container"
    );
    assert_eq!(
        call.binding().expect("same connection after the rotation"),
        mapped
    );

    let run = once_from(
        "le",
        certs,
        &[
            "--docker-container",
            &name,
            "--reload-mode",
            "restart",
            "--verify-tls",
            &addr,
        ],
        &[],
    );
    run.expect_code(0)
        .expect_says(&[&format!("restarted container {name}")]);
    report_timing("docker restart", &run);
    assert_ne!(c.started_at(), started, "restart must change StartedAt");
    assert_eq!(served_serial(&c.tls_addr(), DOMAIN), Some(old));
    let broken = call.binding();
    assert!(
        broken.is_err(),
        "a restart drops the connection: {broken:?}"
    );
}

/// By label: every running container with it, but not a compose one-off container.
#[test]
fn label_reaches_every_labelled_container_but_compose_one_offs() {
    let out = tempfile::tempdir().unwrap();
    let certs = out.path();
    once_from("le", certs, &[], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let key = "certsync.it.group";
    let value = unique("label");
    let label = format!("{key}={value}");
    let a = CoturnContainer::start(&unique("label-a"), &[(key, &value)], certs, free_port());
    let b = CoturnContainer::start(&unique("label-b"), &[(key, &value)], certs, free_port());
    let oneoff = CoturnContainer::start(
        &unique("label-run"),
        &[(key, &value), (ONEOFF, "True")],
        certs,
        free_port(),
    );
    let started: Vec<String> = [&a, &b, &oneoff].iter().map(|c| c.started_at()).collect();
    for c in [&a, &b, &oneoff] {
        wait_served(&c.tls_addr(), DOMAIN, &old, Duration::from_secs(5));
    }

    let addr_b = b.tls_addr();
    let run = once_from(
        "le-ec",
        certs,
        &["--docker-label", &label, "--verify-tls", &addr_b],
        &[],
    );
    run.expect_code(0).expect_says(&[
        &format!(
            "sent SIGUSR2 to 2 containers with label {label}: {}, {}",
            a.name, b.name
        ),
        &format!("left alone: compose one-off {}", oneoff.name),
    ]);
    report_timing("docker label signal (2 containers)", &run);
    let new = file_serial(&certs.join("fullchain.pem"));
    wait_served(&a.tls_addr(), DOMAIN, &new, Duration::from_secs(5));
    assert_eq!(
        served_serial(&b.tls_addr(), DOMAIN).as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        served_serial(&oneoff.tls_addr(), DOMAIN).as_deref(),
        Some(old.as_str()),
        "the one-off container was signalled"
    );
    assert!(!oneoff.logs().contains("Reloading TLS certificates"));
    let now: Vec<String> = [&a, &b, &oneoff].iter().map(|c| c.started_at()).collect();
    assert_eq!(now, started, "signal mode restarted something");

    let run = once_from(
        "le",
        certs,
        &[
            "--docker-label",
            &label,
            "--reload-mode",
            "restart",
            "--verify-tls",
            &addr_b,
        ],
        &[],
    );
    run.expect_code(0)
        .expect_says(&[&format!("restarted 2 containers with label {label}")]);
    report_timing("docker label restart (2 containers, one by one)", &run);
    assert_ne!(a.started_at(), started[0]);
    assert_ne!(b.started_at(), started[1]);
    assert_eq!(
        oneoff.started_at(),
        started[2],
        "the one-off container was restarted"
    );
}

/// Unknown container, unreachable engine: exit 1 with the reason, files written, the
/// reload owed and done once the engine answers (through a TCP proxy, as a
/// docker-socket-proxy would be). No running container with a label: not an error.
#[test]
fn unknown_container_and_unreachable_engine_fail_clearly_and_are_retried() {
    let out = tempfile::tempdir().unwrap();
    let certs = out.path();
    let name = unique("late");

    once_from("le", certs, &["--docker-container", &name], &[])
        .expect_code(1)
        .expect_says(&[
            &format!("no such container {name}"),
            "the files stay written",
        ]);
    assert!(certs.join("fullchain.pem").exists() && certs.join("privkey.pem").exists());
    assert!(certs.join(PENDING).exists());

    let mut gone = SocketProxy::start();
    gone.stop();
    let host = gone.docker_host();
    once_from(
        "le-ec",
        certs,
        &["--docker-container", &name],
        &[("DOCKER_HOST".into(), host.clone())],
    )
    .expect_code(1)
    .expect_says(&[
        &format!("cannot reach the Docker Engine API at {host}"),
        "wrote",
        "the files stay written",
    ]);
    assert!(certs.join(PENDING).exists());

    let c = CoturnContainer::start(&name, &[], certs, free_port());
    let proxy = SocketProxy::start();
    let addr = c.tls_addr();
    once_from(
        "le-ec",
        certs,
        &["--docker-container", &name, "--verify-tls", &addr],
        &[("DOCKER_HOST".into(), proxy.docker_host())],
    )
    .expect_code(0)
    .expect_says(&["unchanged", "sent SIGUSR2", "serves the new certificate"]);
    assert!(!certs.join(PENDING).exists());

    let other = tempfile::tempdir().unwrap();
    let label = format!("certsync.it.none={}", unique("none"));
    once_from("le", other.path(), &["--docker-label", &label], &[])
        .expect_code(0)
        .expect_says(&[&format!("no running container has the label {label}")]);
}
