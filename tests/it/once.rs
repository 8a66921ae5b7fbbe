//! `certsync --once` on the committed Traefik fixtures: what it writes, and when it
//! writes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::bin::*;

fn acme() -> String {
    fixture("acme.json").to_string_lossy().into_owned()
}

/// `--once` on the fixture for `domain` into `out`.
fn from_fixture(domain: &str, out: &Path, extra: &[&str]) -> Run {
    once(&fixture("acme.json"), domain, out, extra)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn writes_the_chain_and_key_exactly_as_traefik_stored_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs/coturn");
    from_fixture("turn.example.test", &out, &["--resolver", "le"])
        .expect_code(0)
        .expect_says(&["wrote"]);

    let mut acme = Acme::load(&fixture("acme.json"));
    let entry = acme.entry("le", "turn.example.test");
    assert_eq!(
        std::fs::read(out.join("fullchain.pem")).unwrap(),
        b64_field(&entry["certificate"])
    );
    assert_eq!(
        std::fs::read(out.join("privkey.pem")).unwrap(),
        b64_field(&entry["key"])
    );
    assert_eq!(mode(&out.join("fullchain.pem")), 0o644);
    assert_eq!(mode(&out.join("privkey.pem")), 0o600);
    assert_eq!(mode(&out), 0o755, "a created out dir is 0755");
    assert_eq!(dir_state(&out).len(), 2, "no temporary file is left behind");
}

#[test]
fn unchanged_content_is_not_rewritten_and_a_wrong_mode_is_repaired_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    from_fixture("turn.example.test", tmp.path(), &["--resolver", "le"]).expect_code(0);
    let before = dir_state(tmp.path());

    from_fixture("turn.example.test", tmp.path(), &["--resolver", "le"])
        .expect_code(0)
        .expect_says(&["unchanged"]);
    assert_eq!(
        dir_state(tmp.path()),
        before,
        "same inode, content and mode"
    );

    let key = tmp.path().join("privkey.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    from_fixture("turn.example.test", tmp.path(), &["--resolver", "le"])
        .expect_code(0)
        .expect_says(&["repaired"]);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        dir_state(tmp.path()),
        before,
        "repaired in place: same inode"
    );
}

#[test]
fn selection_prefers_main_then_san_then_wildcard_and_honours_the_resolver() {
    let tmp = tempfile::tempdir().unwrap();
    let mut acme = Acme::load(&fixture("acme.json"));
    let serial_of = |dir: &Path| {
        certsync::leaf::Leaf::from_der(
            ::pem::parse(std::fs::read(dir.join("fullchain.pem")).unwrap())
                .unwrap()
                .contents(),
        )
        .unwrap()
    };

    // turn.example.test is the main name in both resolvers; --resolver chooses.
    let ec = tmp.path().join("ec");
    from_fixture("turn.example.test", &ec, &["--resolver", "le-ec"]).expect_code(0);
    assert_eq!(serial_of(&ec).key_type, "EC P-256");
    assert_eq!(
        std::fs::read(ec.join("privkey.pem")).unwrap(),
        b64_field(&acme.entry("le-ec", "turn.example.test")["key"])
    );

    // A SAN of the RSA certificate.
    let san = tmp.path().join("san");
    from_fixture("turn-alt.example.test", &san, &[]).expect_code(0);
    assert!(serial_of(&san)
        .names
        .contains(&"turn-alt.example.test".to_owned()));

    // Only the wildcard covers this one.
    let wild = tmp.path().join("wild");
    from_fixture("relay.example.test", &wild, &[]).expect_code(0);
    assert_eq!(serial_of(&wild).names, vec!["*.example.test"]);

    // www.example.test: its own certificate beats the wildcard.
    let www = tmp.path().join("www");
    from_fixture("www.example.test", &www, &[]).expect_code(0);
    assert_eq!(serial_of(&www).names, vec!["www.example.test"]);
}

#[test]
fn ties_go_to_the_latest_not_after() {
    // The same domain as main in two resolvers: without --resolver, the later not-after
    // wins. The fixture's EC and RSA entries differ by seconds; check against the list.
    let tmp = tempfile::tempdir().unwrap();
    from_fixture("turn.example.test", tmp.path(), &[]).expect_code(0);
    let written = certsync::leaf::Leaf::from_der(
        ::pem::parse(std::fs::read(tmp.path().join("fullchain.pem")).unwrap())
            .unwrap()
            .contents(),
    )
    .unwrap();
    let mut acme = Acme::load(&fixture("acme.json"));
    let not_after = |v: &serde_json::Value| {
        certsync::leaf::Leaf::from_der(
            ::pem::parse(b64_field(&v["certificate"]))
                .unwrap()
                .contents(),
        )
        .unwrap()
        .not_after
    };
    let rsa = not_after(acme.entry("le", "turn.example.test"));
    let ec = not_after(acme.entry("le-ec", "turn.example.test"));
    assert_eq!(written.not_after, rsa.max(ec));
}

#[test]
fn leaf_and_chain_files_owner_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    from_fixture(
        "turn.example.test",
        tmp.path(),
        &[
            "--resolver",
            "le",
            "--leaf-file",
            "cert.pem",
            "--chain-file",
            "chain.pem",
            "--owner",
            "nobody:nogroup",
            "--cert-mode",
            "0640",
            "--key-mode",
            "0640",
            "--cert-file",
            "full.pem",
            "--key-file",
            "key.pem",
        ],
    )
    .expect_code(0);
    // The stored chain, split: its first block in cert.pem, the rest in chain.pem.
    let mut source = Acme::load(&fixture("acme.json"));
    let stored = ::pem::parse_many(b64_field(
        &source.entry("le", "turn.example.test")["certificate"],
    ))
    .unwrap();
    assert!(stored.len() >= 2, "the fixture's chain has an intermediate");
    let blocks = |f: &str| ::pem::parse_many(std::fs::read(tmp.path().join(f)).unwrap()).unwrap();
    assert_eq!(blocks("full.pem"), stored);
    assert_eq!(blocks("cert.pem"), stored[..1]);
    assert_eq!(blocks("chain.pem"), stored[1..]);
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    for f in ["full.pem", "key.pem", "cert.pem", "chain.pem"] {
        let m = std::fs::metadata(tmp.path().join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (nobody, nogroup, 0o640),
            "{f}"
        );
    }
}

#[test]
fn traefik_v1_layout_is_read_too() {
    let tmp = tempfile::tempdir().unwrap();
    once(
        &fixture("acme-v1.json"),
        "turn.example.test",
        tmp.path(),
        &[],
    )
    .expect_code(0);
    let mut acme = Acme::load(&fixture("acme.json"));
    assert_eq!(
        std::fs::read(tmp.path().join("privkey.pem")).unwrap(),
        b64_field(&acme.entry("le", "turn.example.test")["key"])
    );
}

#[test]
fn dry_run_says_what_it_would_do_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    from_fixture("turn.example.test", &out, &["--dry-run"])
        .expect_code(0)
        .expect_says(&["would write fullchain.pem, privkey.pem"]);
    assert!(!out.exists());
}

#[test]
fn certbot_lineage_and_its_deploy_hook_variable() {
    // A lineage laid out as certbot does: live/ symlinks into archive/.
    let tmp = tempfile::tempdir().unwrap();
    let mut acme = Acme::load(&fixture("acme.json"));
    let entry = acme.entry("le", "turn.example.test").clone();
    let archive = tmp.path().join("archive/turn.example.test");
    let live = tmp.path().join("live/turn.example.test");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(
        archive.join("fullchain1.pem"),
        b64_field(&entry["certificate"]),
    )
    .unwrap();
    std::fs::write(archive.join("privkey1.pem"), b64_field(&entry["key"])).unwrap();
    std::os::unix::fs::symlink(
        "../../archive/turn.example.test/fullchain1.pem",
        live.join("fullchain.pem"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../archive/turn.example.test/privkey1.pem",
        live.join("privkey.pem"),
    )
    .unwrap();

    let out = tmp.path().join("out");
    certsync(&[
        "--once",
        "--certbot-lineage",
        live.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .expect_code(0);
    assert_eq!(
        std::fs::read(out.join("privkey.pem")).unwrap(),
        b64_field(&entry["key"])
    );
    assert!(!std::fs::symlink_metadata(out.join("privkey.pem"))
        .unwrap()
        .file_type()
        .is_symlink());

    let out2 = tmp.path().join("out2");
    certsync_env(
        &["--once", "--out-dir", out2.to_str().unwrap()],
        &[("RENEWED_LINEAGE", live.to_str().unwrap())],
    )
    .expect_code(0);
    assert_eq!(
        std::fs::read(out2.join("fullchain.pem")).unwrap(),
        b64_field(&entry["certificate"])
    );

    // A domain the lineage does not cover is refused, and the files stay.
    let before = dir_state(&out);
    certsync(&[
        "--once",
        "--certbot-lineage",
        live.to_str().unwrap(),
        "--domain",
        "other.test",
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .expect_code(1)
    .expect_says(&[
        "no certificate covers \"other.test\"",
        "certificate \"turn.example.test\"",
    ]);
    assert_eq!(dir_state(&out), before);
}

#[test]
fn every_option_reads_its_environment_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = acme();
    certsync_env(
        &[],
        &[
            ("CERTSYNC_ONCE", "true"),
            ("CERTSYNC_ACME", &acme),
            ("CERTSYNC_DOMAIN", "www.example.test"),
            ("CERTSYNC_OUT_DIR", tmp.path().to_str().unwrap()),
            ("CERTSYNC_KEY_FILE", "www.key"),
        ],
    )
    .expect_code(0);
    let mut source = Acme::load(&fixture("acme.json"));
    assert_eq!(
        std::fs::read(tmp.path().join("www.key")).unwrap(),
        b64_field(&source.entry("le", "www.example.test")["key"]),
        "CERTSYNC_DOMAIN chose the certificate, CERTSYNC_KEY_FILE named its key file"
    );
}

#[test]
fn usage_errors_exit_2() {
    let acme = acme();
    certsync(&["--once", "--acme", &acme, "--domain", "x.test"])
        .expect_code(2)
        .expect_says(&["--out-dir"]);
    certsync(&["--once", "--acme", &acme, "--out-dir", "/tmp/x"])
        .expect_code(2)
        .expect_says(&["domain"]);
    certsync(&["--once", "--domain", "x", "--out-dir", "/tmp/x"])
        .expect_code(2)
        .expect_says(&["no source"]);
    certsync(&[
        "--once",
        "--acme",
        &acme,
        "--certbot-lineage",
        "/x",
        "--domain",
        "x",
        "--out-dir",
        "/tmp/x",
    ])
    .expect_code(2);
    certsync(&[
        "--once",
        "--acme",
        &acme,
        "--domain",
        "x",
        "--out-dir",
        "/tmp/x",
        "--key-file",
        "../evil",
    ])
    .expect_code(2)
    .expect_says(&["plain file name"]);
    certsync(&["--no-such-flag"]).expect_code(2);
}

#[test]
fn list_prints_one_line_per_certificate() {
    let run = certsync(&["list", "--acme", &acme()]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(lines[0].starts_with("RESOLVER"));
    let turn_ec = lines
        .iter()
        .find(|l| l.starts_with("le-ec") && l.contains("turn.example.test"))
        .unwrap();
    assert!(turn_ec.contains("EC P-256"), "{turn_ec}");
    let turn_rsa = lines
        .iter()
        .find(|l| l.starts_with("le ") && l.contains("turn.example.test"))
        .unwrap();
    assert!(
        turn_rsa.contains("turn-alt.example.test") && turn_rsa.contains("RSA 2048"),
        "{turn_rsa}"
    );
    assert!(lines.iter().any(|l| l.contains("*.example.test")));
    // Days left is a number, consistent with the not-after column.
    let days: i64 = turn_ec.split_whitespace().last().unwrap().parse().unwrap();
    assert!(days > 3000, "{turn_ec}");
}
