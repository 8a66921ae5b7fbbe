//! /metrics, /healthz and the textfile, read from a live daemon and checked with the
//! real tools: openssl for the dates, promtool for the format.

use std::time::Duration;

use crate::support::bin::*;
use crate::support::run_ok;

/// Every metric of the contract, with its labels.
const CONTRACT: &[(&str, &[&str])] = &[
    (
        "certsync_certificate_not_after_seconds",
        &["target", "domain", "serial"],
    ),
    (
        "certsync_certificate_not_before_seconds",
        &["target", "domain", "serial"],
    ),
    (
        "certsync_certificate_expires_in_seconds",
        &["target", "domain"],
    ),
    ("certsync_certificate_expired", &["target", "domain"]),
    (
        "certsync_acme_certificate_not_after_seconds",
        &["resolver", "main"],
    ),
    ("certsync_sync_total", &["target", "result"]),
    ("certsync_last_success_timestamp_seconds", &["target"]),
    ("certsync_reload_total", &["target", "method", "result"]),
    ("certsync_source_up", &[]),
    ("certsync_build_info", &["version"]),
];

/// The samples of `name` as (labels, value), from an exposition text.
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then(|| (labels.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

/// `openssl x509 -enddate` of a PEM file, as Unix seconds.
fn openssl_not_after(pem: &std::path::Path) -> i64 {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(pem)
        .output()
        .expect("openssl");
    let text = String::from_utf8(out.stdout).unwrap();
    // notAfter=2036-11-19 06:09:22Z
    let date = text
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T");
    humantime::parse_rfc3339(&date)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_live_scrape_has_every_contract_metric_and_the_exact_not_after() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::copy(fixture("acme.json"), &acme).unwrap();
    let out = tmp.path().join("out");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(
        &[
            "--acme",
            acme.to_str().unwrap(),
            "--domain",
            "turn.example.test",
            "--resolver",
            "le",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            &addr,
            "--reload-command",
            "true",
        ],
        &[],
    );
    d.wait_log("reloaded", Duration::from_secs(5));

    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    for (name, labels) in CONTRACT {
        let found = samples(&text, name);
        assert!(!found.is_empty(), "{name} missing:\n{text}");
        for l in *labels {
            assert!(
                found.iter().all(|(ls, _)| ls.contains(&format!("{l}=\""))),
                "{name} lacks label {l}: {found:?}"
            );
        }
    }
    let not_after = samples(&text, "certsync_certificate_not_after_seconds");
    assert_eq!(not_after.len(), 1);
    assert_eq!(
        not_after[0].1 as i64,
        openssl_not_after(&out.join("fullchain.pem"))
    );
    assert_eq!(
        samples(&text, "certsync_acme_certificate_not_after_seconds").len(),
        4,
        "every certificate in acme.json"
    );
    assert_eq!(samples(&text, "certsync_certificate_expired")[0].1, 0.0);
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".into()));
    // `certsync health` (a HEALTHCHECK without shell or curl) says the same.
    certsync(&["health", "--metrics-listen", &addr])
        .expect_code(0)
        .expect_says(&["ok"]);

    // Force a failure: the entry now holds another entry's key.
    let mut broken = Acme::load(&acme);
    broken.swap_in_key("le", "turn.example.test", ("le", "www.example.test"));
    broken.write(&acme);
    wait_until(Duration::from_secs(5), "a failing /healthz", || {
        http_get(&addr, "/healthz").0 == 503
    });
    let (_, reason) = http_get(&addr, "/healthz");
    assert!(
        reason.contains("turn.example.test") && reason.contains("does not match"),
        "{reason}"
    );
    certsync(&["health", "--metrics-listen", &addr])
        .expect_code(1)
        .expect_says(&["unhealthy (503)", "does not match"]);
    let (_, text) = http_get(&addr, "/metrics");
    let errors = samples(&text, "certsync_sync_total")
        .into_iter()
        .find(|(l, _)| l.contains("result=\"error\""));
    // One per pass: a rewrite can fire two events, and a failing target is passed
    // over again on a backoff.
    assert!(errors.is_some_and(|(_, v)| v >= 1.0), "{text}");
    // The files in place, and their metrics, stay.
    assert_eq!(
        samples(&text, "certsync_certificate_not_after_seconds")[0].1,
        not_after[0].1
    );
}

#[test]
fn the_textfile_is_valid_prometheus_text_for_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = tmp.path().join("certsync.prom");
    once(
        &fixture("acme.json"),
        "turn.example.test",
        &tmp.path().join("out"),
        &["--textfile", prom.to_str().unwrap()],
    )
    .expect_code(0);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(samples(&text, "certsync_sync_total")
        .iter()
        .any(|(l, v)| l.contains("result=\"written\"") && *v == 1.0));

    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .expect("promtool (Debian package prometheus) is installed by tests/peers/install.sh");
    let said = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    // Exit 1 is a parse error. Exit 3 is lint only: promtool reads the OpenMetrics
    // counter family `certsync_sync` (samples `certsync_sync_total`) as a separate,
    // help-less family; that is the only lint allowed.
    assert_ne!(
        check.status.code(),
        Some(1),
        "promtool cannot parse the textfile:\n{said}\n{text}"
    );
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.ends_with("_total no help text"),
            "unexpected promtool finding: {line}\n{text}"
        );
    }
}

/// The shipped alert rules parse, and fire when they should (promtool's own unit tests).
#[test]
fn the_example_alert_rules_pass_promtool() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for args in [
        ["check", "rules", "prometheus-alerts.yml"],
        ["test", "rules", "prometheus-alerts.test.yml"],
    ] {
        run_ok(
            std::process::Command::new("promtool")
                .args(args)
                .current_dir(&docs),
        );
    }
}
