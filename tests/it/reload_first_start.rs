//! The first start: coturn started before any certificate file exists opens no TLS
//! listener, and SIGUSR2 cannot open one. In signal mode with `--verify-tls`,
//! certsync finds nothing listening, restarts the unit or container once, verifies
//! again, and counts two reloads.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::support::bin::{once_from, report_timing, DOMAIN};
use crate::support::bin::{wait_until, Run};
use crate::support::docker::unique;
use crate::support::docker::CoturnContainer;
use crate::support::systemd::UserManager;
use crate::support::{file_serial, free_port, served_serial, CoturnConfig};

/// Whether process PID catches SIGUSR2 (coturn sets its handler up once it runs).
fn catches_usr2(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (12 - 1)) != 0)
}

fn refuses(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The value of `certsync_reload_total` with these labels in the textfile.
fn reloads(textfile: &Path, method: &str, result: &str) -> Option<f64> {
    let text = fs::read_to_string(textfile).unwrap();
    text.lines()
        .filter(|l| l.starts_with("certsync_reload_total{"))
        .filter(|l| l.contains(&format!("method=\"{method}\"")))
        .find(|l| l.contains(&format!("result=\"{result}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn expect_restarted_once(run: &Run, textfile: &Path, method: &str, restarted: &str) {
    run.expect_code(0).expect_says(&[
        "wrote",
        "sent SIGUSR2",
        "nothing listens on",
        "restarting it once",
        "nothing listened on",
        restarted,
        "serves the new certificate",
    ]);
    assert_eq!(
        reloads(textfile, method, "ok"),
        Some(2.0),
        "the signal and the restart are two reloads:\n{}",
        fs::read_to_string(textfile).unwrap()
    );
    assert_eq!(reloads(textfile, method, "error"), None);
}

#[test]
fn a_unit_started_before_its_files_is_restarted_once_then_serves_them() {
    let m = UserManager::start();
    let env = m.env();
    let certs = m.dir().join("certs");
    assert!(!certs.exists());
    let coturn_config = CoturnConfig::write(m.dir(), &certs);
    let (conf, tls_port) = (coturn_config.file.clone(), coturn_config.tls_port);
    let unit = "coturn-first.service";
    m.install_unit(
        unit,
        &format!(
            "[Unit]\nDescription=coturn started before its certificate\n\n[Service]\n\
             Type=simple\nExecStart={} -c {}\n",
            crate::support::turnserver_bin().display(),
            conf.display()
        ),
    );
    m.start_unit(unit);
    let pid = m.main_pid(unit);
    wait_until(Duration::from_secs(10), "coturn handles SIGUSR2", || {
        catches_usr2(pid)
    });
    assert!(refuses(tls_port), "coturn opened TLS without files");

    let textfile = m.dir().join("metrics.prom");
    let addr = format!("127.0.0.1:{tls_port}");
    let run = once_from(
        "le",
        &certs,
        &[
            "--systemd-unit",
            unit,
            "--systemd-bus",
            "user",
            "--verify-tls",
            &addr,
            "--textfile",
            textfile.to_str().unwrap(),
        ],
        &env,
    );
    expect_restarted_once(&run, &textfile, "systemd", "restarted coturn-first.service");
    report_timing("systemd first start (signal, no listener, restart)", &run);
    let new_pid = m.main_pid(unit);
    assert!(new_pid != 0 && new_pid != pid, "{pid} -> {new_pid}");
    assert_eq!(
        served_serial(&format!("127.0.0.1:{}", tls_port), DOMAIN),
        Some(file_serial(&certs.join("fullchain.pem")))
    );

    // From now on a renewal is a plain signal: no second restart.
    let run = once_from(
        "le-ec",
        &certs,
        &[
            "--systemd-unit",
            unit,
            "--systemd-bus",
            "user",
            "--verify-tls",
            &addr,
        ],
        &env,
    );
    run.expect_code(0)
        .expect_says(&["sent SIGUSR2", "serves the new certificate"]);
    assert!(!run.stderr.contains("nothing listen"), "{}", run.stderr);
    assert_eq!(m.main_pid(unit), new_pid);
}

#[test]
fn a_container_started_before_its_files_is_restarted_once_then_serves_them() {
    let out = tempfile::tempdir().unwrap();
    let certs = out.path().join("certs");
    fs::create_dir(&certs).unwrap();
    let name = unique("first-start");
    let c = CoturnContainer::run(&name, &[], &certs, free_port());
    let started = c.started_at();
    assert!(refuses(c.tls_port), "coturn opened TLS without files");

    let textfile = out.path().join("metrics.prom");
    let addr = format!("127.0.0.1:{}", c.tls_port);
    let run = once_from(
        "le",
        &certs,
        &[
            "--docker-container",
            &name,
            "--verify-tls",
            &addr,
            "--textfile",
            textfile.to_str().unwrap(),
        ],
        &[],
    );
    expect_restarted_once(
        &run,
        &textfile,
        "docker",
        &format!("restarted container {name}"),
    );
    report_timing("docker first start (signal, no listener, restart)", &run);
    assert_ne!(c.started_at(), started);
    assert_eq!(
        served_serial(&format!("127.0.0.1:{}", c.tls_port), DOMAIN),
        Some(file_serial(&certs.join("fullchain.pem")))
    );
}

/// A server whose TLS is off for good (or a wrong `--verify-tls` port): one restart,
/// and when that opens no listener either, the daemon's retries do not restart it
/// again (each restart would drop every call).
#[test]
fn a_restart_that_opens_no_listener_is_not_repeated_by_the_retries() {
    let m = UserManager::start();
    let env = m.env();
    let certs = m.dir().join("certs");
    let coturn_config = CoturnConfig::write(m.dir(), &certs);
    let (conf, tls_port) = (coturn_config.file.clone(), coturn_config.tls_port);
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("no-tls\nno-dtls\n");
    fs::write(&conf, text).unwrap();
    let unit = "coturn-no-tls.service";
    m.install_unit(
        unit,
        &format!(
            "[Service]\nType=simple\nExecStart={} -c {}\n",
            crate::support::turnserver_bin().display(),
            conf.display()
        ),
    );
    m.start_unit(unit);
    let first_pid = m.main_pid(unit);
    wait_until(Duration::from_secs(10), "coturn handles SIGUSR2", || {
        catches_usr2(first_pid)
    });

    let acme = crate::support::fixture("acme.json");
    let addr = format!("127.0.0.1:{tls_port}");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = crate::support::bin::Daemon::start(
        &[
            "--acme",
            acme.to_str().unwrap(),
            "--domain",
            DOMAIN,
            "--resolver",
            "le",
            "--out-dir",
            certs.to_str().unwrap(),
            "--systemd-unit",
            unit,
            "--systemd-bus",
            "user",
            "--verify-tls",
            &addr,
            "--verify-timeout",
            "1s",
            "--metrics-listen",
            "off",
        ],
        &env,
    );
    let failures = |log: &str| log.matches("reload failed").count();
    wait_until(Duration::from_secs(20), "the first failed reload", || {
        failures(&daemon.log()) >= 1
    });
    let restarted_pid = m.main_pid(unit);
    assert!(restarted_pid != 0 && restarted_pid != first_pid);
    // Retries after 1 s and 2 s.
    wait_until(Duration::from_secs(20), "two retries", || {
        failures(&daemon.log()) >= 3
    });
    let log = daemon.log();
    assert_eq!(log.matches("restarting it once").count(), 1, "{log}");
    assert!(
        log.contains("after the last restart either: not restarting again"),
        "{log}"
    );
    assert_eq!(m.main_pid(unit), restarted_pid, "a retry restarted coturn");
}

/// Without a systemd unit or a container there is nothing to restart: the verify
/// waits its whole timeout and fails, naming the refused connection.
#[test]
fn nothing_listening_fails_the_reload_when_nothing_can_be_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    once_from(
        "le",
        tmp.path(),
        &[
            "--reload-command",
            "true",
            "--verify-tls",
            &addr,
            "--verify-timeout",
            "1500ms",
        ],
        &[],
    )
    .expect_code(1)
    .expect_says(&[
        "does not serve the certificate just written",
        "after 1.5 s",
        &format!("cannot connect to {addr}"),
        "Connection refused",
    ]);
}
