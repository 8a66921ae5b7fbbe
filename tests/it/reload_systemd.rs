//! Reload through systemd's D-Bus API, against a real systemd user manager running a
//! real coturn as a unit (`--systemd-bus user`).

use std::time::Duration;

use crate::support::bin::{once_from, report_timing, DOMAIN, PENDING};
use crate::support::stun::StunTls;
use crate::support::systemd::UserManager;
use crate::support::{
    file_serial, served_serial, turnserver_bin, wait_port, wait_served, CoturnConfig,
};

/// A coturn unit serving the manager's `certs/` folder (the files need not exist yet).
fn coturn_unit(m: &UserManager, unit: &str) -> CoturnConfig {
    let certs = m.dir().join("certs");
    let conf = CoturnConfig::write(m.dir(), &certs);
    m.install_unit(
        unit,
        &format!(
            "[Unit]\nDescription=coturn for certsync tests\n\n[Service]\nType=simple\n\
             ExecStart={} -c {}\n",
            turnserver_bin().display(),
            conf.file.display()
        ),
    );
    conf
}

fn reload_args<'a>(unit: &'a str, addr: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--systemd-unit",
        unit,
        "--systemd-bus",
        "user",
        "--verify-tls",
        addr,
    ];
    a.extend_from_slice(extra);
    a
}

/// Signal mode: coturn serves the new serial, keeps its MainPID and answers on a
/// connection opened before the rotation. Restart mode: a new MainPID, and that
/// connection is gone.
#[test]
fn signal_keeps_the_process_and_its_calls_restart_replaces_both() {
    let m = UserManager::start();
    let env = m.env();
    let certs = m.dir().join("certs");
    once_from("le", &certs, &[], &env).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));

    let unit = "coturn-signal.service";
    let coturn = coturn_unit(&m, unit);
    let (tls_port, addr) = (coturn.tls_port, coturn.tls_addr());
    m.start_unit(unit);
    assert!(
        wait_port(tls_port, Duration::from_secs(10)),
        "coturn TLS port {tls_port}:\n{}",
        coturn.log_text()
    );
    wait_served(&addr, DOMAIN, &old, Duration::from_secs(5));
    let pid = m.main_pid(unit);
    assert!(pid > 0);

    let mut call = StunTls::connect(tls_port, DOMAIN).unwrap();
    let mapped = call.binding().expect("Binding before the rotation");
    assert_eq!(mapped, call.local_addr(), "XOR-MAPPED-ADDRESS is our end");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");

    let run = once_from("le-ec", &certs, &reload_args(unit, &addr, &[]), &env);
    run.expect_code(0).expect_says(&[
        "wrote",
        "sent SIGUSR2 to the main process of coturn-signal.service",
        "serves the new certificate",
    ]);
    report_timing("systemd signal", &run);
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_ne!(new, old);
    assert_eq!(served_serial(&addr, DOMAIN).as_deref(), Some(new.as_str()));
    assert_eq!(m.main_pid(unit), pid, "SIGUSR2 must not restart coturn");
    assert!(coturn
        .log_text()
        .contains("Reloading TLS certificates and keys"));
    let again = call
        .binding()
        .expect("the connection opened before the rotation still gets answers");
    assert_eq!(again, mapped);

    let run = once_from(
        "le",
        &certs,
        &reload_args(unit, &addr, &["--reload-mode", "restart"]),
        &env,
    );
    run.expect_code(0)
        .expect_says(&["restarted coturn-signal.service", "done"]);
    report_timing("systemd restart", &run);
    let pid2 = m.main_pid(unit);
    assert!(
        pid2 != 0 && pid2 != pid,
        "restart must replace coturn ({pid} -> {pid2})"
    );
    assert_eq!(served_serial(&addr, DOMAIN).as_deref(), Some(old.as_str()));
    let broken = call.binding();
    assert!(
        broken.is_err(),
        "a restart drops the connection, yet it answered: {broken:?}"
    );
}

/// A unit that does not exist is a failed reload (files written), retried by the
/// next pass although the files are unchanged; a stopped unit is fine in signal mode.
#[test]
fn a_missing_unit_fails_and_the_owed_reload_is_retried() {
    let m = UserManager::start();
    let env = m.env();
    let certs = m.dir().join("certs");
    let unit = "coturn-late.service";
    let addr = "127.0.0.1:1"; // not reached: nothing runs yet
    let args = ["--systemd-unit", unit, "--systemd-bus", "user"];

    once_from("le", &certs, &args, &env)
        .expect_code(1)
        .expect_says(&[
            "unit coturn-late.service does not exist on the user manager",
            "the files stay written",
        ]);
    assert!(certs.join("fullchain.pem").exists() && certs.join("privkey.pem").exists());
    assert!(certs.join(PENDING).exists(), "the reload is owed");

    // Restart mode says the same.
    once_from(
        "le",
        &certs,
        &[
            "--systemd-unit",
            "nope",
            "--systemd-bus",
            "user",
            "--reload-mode",
            "restart",
        ],
        &env,
    )
    .expect_code(1)
    .expect_says(&["unit nope.service does not exist"]);

    // The unit now exists but is stopped: not an error in signal mode, nothing to verify.
    let coturn = coturn_unit(&m, unit);
    let mut with_verify = args.to_vec();
    with_verify.extend(["--verify-tls", addr]);
    once_from("le", &certs, &with_verify, &env)
        .expect_code(0)
        .expect_says(&[
            "unchanged",
            "coturn-late.service is not running (inactive/dead); it will read the new files when it starts",
            "not verified: nothing is running",
        ]);
    assert!(!certs.join(PENDING).exists());

    // Running: a renewal is signalled and served. Signalled at once after the start:
    // coturn handles SIGUSR2 only ~150 ms after it starts, and dies of it before that,
    // so certsync waits until its main process handles the signal.
    m.start_unit(unit);
    let pid = m.main_pid(unit);
    let addr = coturn.tls_addr();
    once_from("le-ec", &certs, &reload_args(unit, &addr, &[]), &env)
        .expect_code(0)
        .expect_says(&["sent SIGUSR2", "serves the new certificate"]);
    assert_eq!(m.main_pid(unit), pid, "coturn died of the early signal");
    assert_eq!(
        served_serial(&addr, DOMAIN),
        Some(file_serial(&certs.join("fullchain.pem")))
    );

    // No bus at all: said plainly, with the address.
    let no_bus = vec![
        (
            "DBUS_SESSION_BUS_ADDRESS".to_string(),
            "unix:path=/nonexistent/bus".to_string(),
        ),
        ("XDG_RUNTIME_DIR".to_string(), "/nonexistent".to_string()),
    ];
    once_from("le", &certs, &args, &no_bus)
        .expect_code(1)
        .expect_says(&["cannot connect to the user bus at unix:path=/nonexistent/bus"]);
    assert!(certs.join(PENDING).exists());
}
