//! `--verify-tls`: a real coturn, serving the old certificate or the new one.

use std::time::{Duration, Instant};

use crate::support::bin::{once_from, report_timing, DOMAIN, PENDING};
use crate::support::{file_serial, free_port, served_serial, wait_served, Coturn};

#[test]
fn a_server_still_serving_the_old_certificate_fails_the_reload_then_the_retry_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    once_from("le", &certs, &[], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let coturn = Coturn::start(tmp.path(), &certs);
    let addr = coturn.tls_addr();
    wait_served(&addr, DOMAIN, &old, Duration::from_secs(5));

    // A reload that does nothing: coturn keeps the old certificate.
    let t = Instant::now();
    let run = once_from(
        "le-ec",
        &certs,
        &[
            "--reload-command",
            "true",
            "--verify-tls",
            &addr,
            "--verify-timeout",
            "1s",
        ],
        &[],
    );
    let took = t.elapsed();
    run.expect_code(1).expect_says(&[
        &format!("verify: {addr} does not serve the certificate just written"),
        "after 1.0 s",
        "it serves another certificate: serial",
        "the files stay written",
    ]);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // What was served is named by its serial (x509 prints it with colons).
    let said = run.stderr.replace(':', "").to_uppercase();
    assert!(
        said.contains(&old),
        "the message does not name serial {old}:\n{}",
        run.stderr
    );
    assert!(tmp.path().join("certs").join(PENDING).exists());

    // The owed reload, now a real one: SIGUSR2 to coturn.
    let kill = format!("kill -USR2 {}", coturn.pid());
    let run = once_from(
        "le-ec",
        &certs,
        &["--reload-command", &kill, "--verify-tls", &addr],
        &[],
    );
    run.expect_code(0)
        .expect_says(&["unchanged", "serves the new certificate"]);
    report_timing("command (kill -USR2)", &run);
    assert_eq!(
        served_serial(&addr, DOMAIN),
        Some(file_serial(&certs.join("fullchain.pem")))
    );
    assert!(coturn
        .config
        .log_text()
        .contains("Reloading TLS certificates and keys"));
}

#[test]
fn nothing_listening_names_the_connection_error() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    once_from(
        "le",
        tmp.path(),
        &["--verify-tls", &addr, "--verify-timeout", "500ms"],
        &[],
    )
    .expect_code(1)
    .expect_says(&[&format!("cannot connect to {addr}"), "Connection refused"]);
}
