//! Against a live Traefik and Pebble: the certificate Traefik gets is the one coturn
//! ends up serving, first through `--once`, then through the daemon across a real
//! renewal.

use std::time::{Duration, Instant};

use crate::support::bin::{http_get, once, Daemon};
use crate::support::{
    file_serial, read_certificate, served_serial, Coturn, Pebble, Resolver, Traefik,
};

#[test]
fn traefik_issues_certsync_writes_coturn_serves() {
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 3600);
    let mut traefik = Traefik::start(
        work.path(),
        &pebble,
        &[Resolver::new("le", "RSA2048", &[&["turn.example.test"]])],
    );
    traefik.wait_for("le", "turn.example.test", Duration::from_secs(60));

    let out = work.path().join("certs");
    once(&traefik.acme_json, "turn.example.test", &out, &[]).expect_code(0);
    let coturn = Coturn::start(work.path(), &out);
    let served = served_serial(&coturn.tls_addr(), "turn.example.test");
    assert_eq!(
        served.as_deref(),
        Some(file_serial(&out.join("fullchain.pem")).as_str())
    );
}

/// Pebble issues 20-minute certificates and Traefik is told they last an hour, so it
/// renews about once a minute (TESTBED.md). The daemon must follow a real renewal within
/// a second, have coturn serve it (SIGUSR2 by command, then a TLS probe), and show it in
/// /metrics; a 20-minute certificate also trips the (configurable) expiry warning.
#[test]
fn the_daemon_follows_a_real_traefik_renewal() {
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 1200);
    let resolver =
        Resolver::new("le", "EC256", &[&["turn.example.test"]]).certificates_duration_hours(1);
    let mut traefik = Traefik::start(work.path(), &pebble, &[resolver]);
    let first = traefik.wait_for("le", "turn.example.test", Duration::from_secs(60));

    // coturn starts on the first certificate, written by --once.
    let out = work.path().join("certs");
    let acme = traefik.acme_json.clone();
    once(&acme, "turn.example.test", &out, &[]).expect_code(0);
    let coturn = Coturn::start(work.path(), &out);

    let metrics = format!("127.0.0.1:{}", crate::support::bin::free_port());
    let reload = format!("kill -USR2 {}", coturn.pid());
    let daemon = Daemon::start(
        &[
            "--acme",
            acme.to_str().unwrap(),
            "--domain",
            "turn.example.test",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
            "--reload-command",
            &reload,
            "--verify-tls",
            &coturn.tls_addr(),
            "--expiry-warning",
            "1h",
            "--expiry-critical",
            "5m",
        ],
        &[],
    );
    daemon.wait_log("unchanged", Duration::from_secs(5));

    // Watch both files closely: when does acme.json change, when does fullchain.pem?
    let before = std::fs::read(out.join("fullchain.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    let (mut acme_changed, mut out_changed) = (None, None);
    while (acme_changed.is_none() || out_changed.is_none()) && Instant::now() < deadline {
        let now = Instant::now();
        if acme_changed.is_none()
            && read_certificate(&acme, "le", "turn.example.test").is_some_and(|c| c != first)
        {
            acme_changed = Some(now);
        }
        if out_changed.is_none()
            && std::fs::read(out.join("fullchain.pem")).is_ok_and(|c| c != before)
        {
            out_changed = Some(now);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (acme_changed, out_changed) = (
        acme_changed.expect("Traefik renewed"),
        out_changed.expect("certsync followed"),
    );
    let lag = out_changed.saturating_duration_since(acme_changed);
    assert!(
        lag < Duration::from_secs(1),
        "fullchain.pem followed acme.json after {lag:?}"
    );

    // coturn serves the renewed certificate (certsync's own probe said so first).
    daemon.wait_log("serves the new certificate", Duration::from_secs(15));
    let renewed_serial = file_serial(&out.join("fullchain.pem"));
    assert_eq!(
        served_serial(&coturn.tls_addr(), "turn.example.test").as_deref(),
        Some(renewed_serial.as_str())
    );

    // /metrics shows the renewed certificate, and its few minutes left.
    let (_, text) = http_get(&metrics, "/metrics");
    let line = text
        .lines()
        .find(|l| l.starts_with("certsync_certificate_not_after_seconds"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("serial=\"{renewed_serial}\"")),
        "{line}"
    );
    let expires_in: f64 = text
        .lines()
        .find(|l| l.starts_with("certsync_certificate_expires_in_seconds"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!(expires_in > 0.0 && expires_in <= 1200.0, "{expires_in}");
    assert!(
        text.contains(
            "certsync_reload_total{target=\"turn.example.test\",method=\"command\",result=\"ok\"}"
        ),
        "{text}"
    );
    // 20 minutes left: above the 5 min critical threshold, below the 1 h warning, and
    // the time left the warning states agrees with the metric.
    let log = daemon.log();
    let warning = log
        .lines()
        .rfind(|l| l.contains("certificate expires in"))
        .unwrap_or_else(|| panic!("no expiry warning:\n{log}"));
    assert!(warning.contains(" WARN "), "not a warning: {warning}");
    let stated = warning
        .split("certificate expires in ")
        .nth(1)
        .map(|rest| {
            // "19m 58s target=... domain=...": the words before the first field.
            let words: Vec<&str> = rest
                .split_whitespace()
                .take_while(|w| !w.contains('='))
                .collect();
            words.join(" ")
        })
        .and_then(|words| humantime::parse_duration(&words).ok())
        .unwrap_or_else(|| panic!("no duration in {warning}"));
    assert!(
        stated > Duration::from_secs(5 * 60) && stated <= Duration::from_secs(20 * 60),
        "{stated:?} left, said {warning}"
    );
    eprintln!("live renewal: fullchain.pem followed acme.json after {lag:?}");
}
