//! `--caddy-storage`: a real Caddy gets certificates from Pebble, certsync writes them
//! for a real coturn and follows Caddy's renewal; the folder rules and bad input on
//! storage made by hand, in Caddy's layout.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::bin::{certsync, dir_state, http_get, wait_until, Daemon, Run};
use crate::support::caddy::Caddy;
use crate::support::{file_serial, free_port, served_serial, wait_served, Coturn, Pebble};

fn once_caddy(storage: &Path, domain: &str, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--once",
        "--caddy-storage",
        storage.to_str().unwrap(),
        "--domain",
        domain,
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        "off",
    ];
    args.extend_from_slice(extra);
    certsync(&args)
}

/// Pebble issues 2-minute certificates, so Caddy (checking every second) renews after
/// about 80 s and rewrites the files. coturn serves the first certificate from
/// `--once`, then the daemon follows the renewal: coturn serves the new serial.
#[test]
fn caddy_issues_certsync_writes_coturn_serves_and_follows_the_renewal() {
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 120);
    // Caddy 2.6 (certmagic 0.17) obtains its sites' first certificates concurrently,
    // and each order with no account yet registers one: the storage can end up with
    // one account's key beside the other's registration, and every later order (the
    // renewal this test waits for) then fails Pebble's JWS check. One site first
    // makes the account once; the restart then reuses it for both.
    let first_site = Caddy::start(work.path(), &pebble, &["turn.example.test"]);
    first_site.wait_for("turn.example.test", Duration::from_secs(60));
    drop(first_site);
    let caddy = Caddy::start(
        work.path(),
        &pebble,
        &["turn.example.test", "alt.example.test"],
    );
    caddy.wait_for("turn.example.test", Duration::from_secs(60));
    caddy.wait_for("alt.example.test", Duration::from_secs(60));
    let crt = caddy.file("turn.example.test", "crt");
    let key = caddy.file("turn.example.test", "key");

    // What Caddy wrote, as `list` shows it to a script.
    let run = certsync(&[
        "list",
        "--caddy-storage",
        caddy.storage.to_str().unwrap(),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let turn = rows
        .iter()
        .find(|r| r["main"] == "turn.example.test")
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert_eq!(turn["resolver"], caddy.issuer);
    assert_eq!(turn["serial"].as_str().unwrap(), file_serial(&crt));
    assert_eq!(
        turn["origin"],
        crt.parent().unwrap().to_str().unwrap(),
        "{}",
        run.stdout
    );
    assert!(rows.iter().any(|r| r["main"] == "alt.example.test"));
    eprintln!(
        "Caddy {}: {}",
        String::from_utf8_lossy(
            &std::process::Command::new("caddy")
                .arg("version")
                .output()
                .unwrap()
                .stdout
        )
        .trim(),
        crt.strip_prefix(&caddy.storage).unwrap().display()
    );

    let out = work.path().join("certs");
    once_caddy(&caddy.storage, "turn.example.test", &out, &[]).expect_code(0);
    assert_eq!(
        std::fs::read(out.join("fullchain.pem")).unwrap(),
        std::fs::read(&crt).unwrap()
    );
    let coturn = Coturn::start(work.path(), &out);
    let first = file_serial(&crt);
    wait_served(
        &coturn.tls_addr(),
        "turn.example.test",
        &first,
        Duration::from_secs(10),
    );

    let metrics = format!("127.0.0.1:{}", free_port());
    let reload = format!("kill -USR2 {}", coturn.pid());
    let daemon = Daemon::start(
        &[
            "--caddy-storage",
            caddy.storage.to_str().unwrap(),
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
            // Pebble's 2-minute certificates are no reason for alarm here.
            "--expiry-warning",
            "30s",
            "--expiry-critical",
            "10s",
        ],
        &[],
    );
    daemon.wait_log("unchanged", Duration::from_secs(5));
    // Every certificate of the storage, targeted or not, recorded after the pass.
    for name in ["turn.example.test", "alt.example.test"] {
        let series = format!(
            "certsync_acme_certificate_not_after_seconds{{resolver=\"{}\",main=\"{name}\"}}",
            caddy.issuer
        );
        wait_until(Duration::from_secs(5), &series, || {
            http_get(&metrics, "/metrics").1.contains(&series)
        });
    }

    // Caddy's renewal: when the new certificate lands, and when coturn serves it.
    let (old_crt, old_inode) = (std::fs::read(&crt).unwrap(), inode(&crt));
    let old_key = std::fs::read(&key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    let written = loop {
        if std::fs::read(&crt).is_ok_and(|c| c != old_crt && !c.is_empty()) {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "Caddy did not renew within 150 s\n{}",
            crate::support::log_tail(&caddy.log, 40)
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let renewed = loop {
        // Written in place, the file can be caught half-written: openssl then fails.
        if let Some(serial) = serial_if_whole(&crt).filter(|s| *s != first) {
            break serial;
        }
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "no new serial in {crt:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let served_at = loop {
        if served_serial(&coturn.tls_addr(), "turn.example.test").as_deref() == Some(&renewed) {
            break Instant::now();
        }
        assert!(
            written.elapsed() < Duration::from_secs(20),
            "coturn does not serve the renewed serial {renewed}\n{}",
            daemon.log()
        );
    };
    eprintln!(
        "Caddy renewal: key {}; .crt rewritten {} (inode {} -> {}); Caddy's write -> coturn serving {:?}",
        if std::fs::read(&key).unwrap() == old_key {
            "reused"
        } else {
            "new"
        },
        if inode(&crt) == old_inode {
            "in place"
        } else {
            "by rename"
        },
        old_inode,
        inode(&crt),
        served_at - written
    );
    assert_eq!(file_serial(&out.join("fullchain.pem")), renewed);
    assert_eq!(
        std::fs::read(out.join("privkey.pem")).unwrap(),
        std::fs::read(&key).unwrap()
    );
    let log = daemon.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// The serial of a PEM certificate file, or None while it does not parse.
fn serial_if_whole(pem: &Path) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_uppercase()
    })
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// A certificate and key for `names`, valid until 1 January of `until` (before 2020:
/// expired), as Caddy stores them: PEM certificate, SEC1-or-PKCS#8 PEM key.
fn made(names: &[&str], until: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `certificates/<issuer>/<folder>/<folder>.crt|.key|.json` for `names`.
fn store(storage: &Path, issuer: &str, names: &[&str], until: i32) -> PathBuf {
    let folder = names[0].replace('*', "wildcard_");
    let dir = storage.join("certificates").join(issuer).join(&folder);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = made(names, until);
    std::fs::write(dir.join(format!("{folder}.crt")), cert).unwrap();
    std::fs::write(dir.join(format!("{folder}.key")), key).unwrap();
    std::fs::write(
        dir.join(format!("{folder}.json")),
        serde_json::to_vec(&serde_json::json!({"sans": names, "issuer_data": {}})).unwrap(),
    )
    .unwrap();
    dir
}

/// Several issuers, a wildcard folder, and hostile entries: selection as for
/// acme.json, `--resolver` names the issuer folder, and nothing outside the storage
/// is read through a symlink.
#[test]
fn caddy_storage_folders_select_as_acme_json_and_symlinks_are_not_followed() {
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("caddy");
    let serial = |dir: &Path| {
        let name = dir.file_name().unwrap().to_str().unwrap();
        file_serial(&dir.join(format!("{name}.crt")))
    };
    let older = store(
        &storage,
        "acme-v02.api.letsencrypt.org-directory",
        &["turn.example.test"],
        2090,
    );
    let newer = store(
        &storage,
        "acme.zerossl.com-v2-dv90",
        &["turn.example.test"],
        2091,
    );
    let wildcard = store(
        &storage,
        "acme.zerossl.com-v2-dv90",
        &["*.example.test"],
        2095,
    );
    let multi = store(
        &storage,
        "local",
        &["www.example.test", "alt.example.test"],
        2099,
    );

    // Outside the storage, a certificate for a name nothing inside holds, reachable
    // only through planted symlinks: an issuer folder, a name folder, a file.
    let outside = work.path().join("outside");
    let evil = store(&outside, "x", &["evil.other.test"], 2099);
    symlink(
        outside.join("certificates/x"),
        storage.join("certificates/planted"),
    )
    .unwrap();
    symlink(&evil, storage.join("certificates/local/evil.other.test")).unwrap();
    let linked = storage.join("certificates/local/evil2.other.test");
    std::fs::create_dir_all(&linked).unwrap();
    for ext in ["crt", "key"] {
        symlink(
            evil.join(format!("evil.other.test.{ext}")),
            linked.join(format!("evil2.other.test.{ext}")),
        )
        .unwrap();
    }
    std::fs::create_dir_all(storage.join("certificates/local/..hidden")).unwrap();

    let out = work.path().join("out");
    let pick = |domain: &str, extra: &[&str]| {
        once_caddy(&storage, domain, &out, extra).expect_code(0);
        file_serial(&out.join("fullchain.pem"))
    };
    assert_eq!(
        pick("turn.example.test", &[]),
        serial(&newer),
        "latest not-after"
    );
    assert_eq!(
        pick(
            "turn.example.test",
            &["--resolver", "acme-v02.api.letsencrypt.org-directory"]
        ),
        serial(&older),
        "--resolver names the issuer folder"
    );
    assert_eq!(
        pick("x.example.test", &[]),
        serial(&wildcard),
        "wildcard_ folder"
    );
    assert_eq!(
        pick("alt.example.test", &[]),
        serial(&multi),
        "a SAN from the .json"
    );

    for domain in ["evil.other.test", "evil2.other.test"] {
        once_caddy(&storage, domain, &work.path().join("evil-out"), &[])
            .expect_code(1)
            .expect_says(&["no certificate covers"]);
    }
    let run = certsync(&["list", "--caddy-storage", storage.to_str().unwrap()]);
    run.expect_code(0).expect_says(&[
        "*.example.test",
        "unusable: not a folder (a symlink is not followed)",
        "unusable: its .crt is not a regular file",
    ]);
    assert!(!run.stdout.contains("..hidden"), "{}", run.stdout);
}

/// Each bad input for a certificate a target selects: exit 1, a message that says
/// what is wrong, the files in the out dir untouched.
#[test]
fn bad_caddy_storage_is_refused_and_the_files_stay() {
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("caddy");
    let issuer = "acme-v02.api.letsencrypt.org-directory";
    let dir = store(&storage, issuer, &["turn.example.test"], 2090);
    let (crt, key) = (
        dir.join("turn.example.test.crt"),
        dir.join("turn.example.test.key"),
    );
    let out = work.path().join("out");
    once_caddy(&storage, "turn.example.test", &out, &[]).expect_code(0);
    let before = dir_state(&out);
    let (good_crt, good_key) = (
        std::fs::read_to_string(&crt).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    );
    let (_, other_key) = made(&["turn.example.test"], 2090);
    let (old_crt, old_key) = made(&["turn.example.test"], 2020);

    let cases: [(&str, &str, &str, &[&str]); 5] = [
        (
            "a key that does not match (mid-renewal)",
            &good_crt,
            &other_key,
            &[
                "is not ready",
                "is mid-write",
                "does not match the certificate",
            ],
        ),
        (
            "an expired certificate",
            &old_crt,
            &old_key,
            &["the certificate expired"],
        ),
        (
            "a .crt that is not PEM",
            "garbage\n",
            &good_key,
            &["the certificate is not a PEM chain"],
        ),
        (
            "an empty .crt mid-write",
            "",
            &good_key,
            &["is not ready", "the certificate file is empty"],
        ),
        (
            "an empty .key mid-write",
            &good_crt,
            "",
            &["is not ready", "the key file is empty"],
        ),
    ];
    for (what, c, k, says) in cases {
        std::fs::write(&crt, c).unwrap();
        std::fs::write(&key, k).unwrap();
        let run = once_caddy(&storage, "turn.example.test", &out, &[]);
        run.expect_code(1).expect_says(says);
        assert!(
            !run.stderr.contains("PRIVATE KEY"),
            "{what}: a key in a message"
        );
        assert_eq!(dir_state(&out), before, "{what}: the out dir changed");
    }

    once_caddy(&work.path().join("nowhere"), "turn.example.test", &out, &[])
        .expect_code(1)
        .expect_says(&["nowhere does not exist (yet)"]);
    // Caddy started, no certificate yet.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    once_caddy(&empty, "turn.example.test", &out, &[])
        .expect_code(1)
        .expect_says(&["empty/certificates does not exist (yet)"]);
    assert_eq!(dir_state(&out), before);
}
