//! `--all`: every certificate of the fixture Traefik wrote, one folder each (issue 12).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use certsync::leaf::Leaf;

use crate::support::bin::*;

/// `certsync --once --acme ACME --all --out-dir OUT EXTRA...`
fn export(acme: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--once",
        "--acme",
        acme.to_str().unwrap(),
        "--all",
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        "off",
    ];
    args.extend_from_slice(extra);
    certsync(&args)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn not_after(entry: &serde_json::Value) -> i64 {
    let pem = b64_field(&entry["certificate"]);
    let block = pem::parse(&pem).unwrap();
    Leaf::from_der(block.contents()).unwrap().not_after
}

/// The folders under `out`, sorted.
fn folders(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_certificate_gets_a_folder_byte_equal_to_its_entry_with_owner_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    // A group other than the running user's own proves the owner is applied.
    let owner = format!("{}:65534", nix::unistd::getuid());
    export(
        &fixture("acme.json"),
        &out,
        &[
            "--owner",
            &owner,
            "--cert-mode",
            "0640",
            "--key-mode",
            "0600",
            "--chain-file",
            "chain.pem",
        ],
    )
    .expect_code(0)
    .expect_says(&["wrote"]);
    assert_eq!(
        folders(&out),
        [
            "_wildcard.example.test",
            "turn.example.test",
            "www.example.test"
        ]
    );

    let mut acme = Acme::load(&fixture("acme.json"));
    // turn.example.test is held by both resolvers: the later not-after wins.
    let (rsa, ec) = (
        not_after(acme.entry("le", "turn.example.test")),
        not_after(acme.entry("le-ec", "turn.example.test")),
    );
    assert_ne!(rsa, ec, "the fixture's two entries must differ to tell");
    let turn_from = if rsa > ec { "le" } else { "le-ec" };
    for (folder, resolver, main) in [
        ("_wildcard.example.test", "le-ec", "*.example.test"),
        ("turn.example.test", turn_from, "turn.example.test"),
        ("www.example.test", "le", "www.example.test"),
    ] {
        let dir = out.join(folder);
        let entry = acme.entry(resolver, main);
        let fullchain = std::fs::read(dir.join("fullchain.pem")).unwrap();
        assert_eq!(fullchain, b64_field(&entry["certificate"]), "{folder}");
        assert_eq!(
            std::fs::read(dir.join("privkey.pem")).unwrap(),
            b64_field(&entry["key"]),
            "{folder}"
        );
        let chain = std::fs::read_to_string(dir.join("chain.pem")).unwrap();
        assert!(
            chain.starts_with("-----BEGIN CERTIFICATE-----")
                && String::from_utf8_lossy(&fullchain).ends_with(&chain),
            "{folder}: the chain file is the fullchain without its leaf"
        );
        assert_eq!(mode(&dir.join("fullchain.pem")), 0o640);
        assert_eq!(mode(&dir.join("chain.pem")), 0o640);
        assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
        assert_eq!(mode(&dir), 0o755);
        let meta = std::fs::metadata(dir.join("privkey.pem")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (nix::unistd::getuid().as_raw(), 65534)
        );
        assert!(dir.join(".certsync-export").is_file(), "the prune marker");
    }

    // The same source again: nothing is rewritten.
    let before: Vec<_> = folders(&out)
        .iter()
        .map(|f| dir_state(&out.join(f)))
        .collect();
    export(
        &fixture("acme.json"),
        &out,
        &[
            "--owner",
            &owner,
            "--cert-mode",
            "0640",
            "--chain-file",
            "chain.pem",
        ],
    )
    .expect_code(0);
    let after: Vec<_> = folders(&out)
        .iter()
        .map(|f| dir_state(&out.join(f)))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_renewal_rewrites_only_its_folder_and_runs_the_hook_once_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (acme_path, out, log) = (
        tmp.path().join("acme.json"),
        tmp.path().join("out"),
        tmp.path().join("hook.log"),
    );
    std::fs::copy(fixture("acme.json"), &acme_path).unwrap();
    let hook = format!(
        "echo \"$CERTSYNC_DOMAIN|$CERTSYNC_DIR|$CERTSYNC_CERT_FILE|$CERTSYNC_KEY_FILE\" >> {}",
        log.display()
    );
    export(&acme_path, &out, &["--reload-command", &hook]).expect_code(0);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    std::fs::remove_file(&log).unwrap();
    let before: Vec<_> = folders(&out)
        .iter()
        .map(|f| dir_state(&out.join(f)))
        .collect();

    // "Renew" www.example.test: the wildcard's chain and key cover it too.
    let mut acme = Acme::load(&acme_path);
    let wildcard = acme.entry("le-ec", "*.example.test").clone();
    let www = acme.entry("le", "www.example.test");
    www["certificate"] = wildcard["certificate"].clone();
    www["key"] = wildcard["key"].clone();
    acme.write(&acme_path);

    export(&acme_path, &out, &["--reload-command", &hook])
        .expect_code(0)
        .expect_says(&["wrote fullchain.pem, privkey.pem"]);
    let www_dir = out.join("www.example.test");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "www.example.test|{d}|{d}/fullchain.pem|{d}/privkey.pem\n",
            d = www_dir.display()
        ),
        "the hook runs once, for the renewed certificate only"
    );
    let after: Vec<_> = folders(&out)
        .iter()
        .map(|f| dir_state(&out.join(f)))
        .collect();
    assert_eq!(before[0], after[0], "_wildcard.example.test untouched");
    assert_eq!(before[1], after[1], "turn.example.test untouched");
    assert_ne!(before[2], after[2], "www.example.test rewritten");
    assert_eq!(
        std::fs::read(www_dir.join("fullchain.pem")).unwrap(),
        b64_field(&wildcard["certificate"])
    );
}

/// A running daemon reads only the changed entries of a change pass. When a folder's
/// set of entries changes around an unchanged one (a resolver gains, then loses, a
/// newer copy of a certificate), it must still choose among all of them: the folder
/// ends as `--once --all` writes it from the same file, both ways.
#[test]
fn a_folder_gaining_and_losing_an_entry_is_chosen_among_all_of_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (acme_path, out) = (tmp.path().join("acme.json"), tmp.path().join("out"));
    let full = Acme::load(&fixture("acme.json"));
    // turn.example.test is under both resolvers: the newer copy joins and leaves.
    let (newer, older) = {
        let mut a = Acme::load(&fixture("acme.json"));
        let le = not_after(a.entry("le", "turn.example.test"));
        let ec = not_after(a.entry("le-ec", "turn.example.test"));
        assert_ne!(le, ec, "the fixture's two copies must differ in not-after");
        if ec > le {
            ("le-ec", "le")
        } else {
            ("le", "le-ec")
        }
    };
    let mut without = Acme::load(&fixture("acme.json"));
    without.0[newer]["Certificates"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["domain"]["main"] != "turn.example.test");
    // What --once --all writes for a file: the oracle for the daemon's folder.
    let expected = |acme: &Acme| -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (file, o) = (dir.path().join("acme.json"), dir.path().join("out"));
        acme.write(&file);
        export(&file, &o, &[]).expect_code(0);
        std::fs::read(o.join("turn.example.test/fullchain.pem")).unwrap()
    };
    let (with_newer, with_older_only) = (expected(&full), expected(&without));
    assert_eq!(
        with_newer,
        b64_field(&Acme(full.0.clone()).entry(newer, "turn.example.test")["certificate"])
    );
    assert_ne!(
        with_newer, with_older_only,
        "{older} alone gives another folder"
    );

    without.write(&acme_path);
    let daemon = Daemon::start(
        &[
            "--acme",
            acme_path.to_str().unwrap(),
            "--all",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    let turn = out.join("turn.example.test/fullchain.pem");
    let holds = |want: &[u8]| std::fs::read(&turn).is_ok_and(|c| c == want);
    wait_until(Duration::from_secs(10), "the older copy", || {
        holds(&with_older_only)
    });
    rewrite_in_place(&acme_path, &serde_json::to_vec_pretty(&full.0).unwrap());
    wait_until(
        Duration::from_secs(10),
        "the newer copy once it joins",
        || holds(&with_newer),
    );
    rewrite_in_place(&acme_path, &serde_json::to_vec_pretty(&without.0).unwrap());
    wait_until(
        Duration::from_secs(10),
        "the older copy once the newer leaves",
        || holds(&with_older_only),
    );
    let log = daemon.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// A folder's hook that fails in the daemon is tried again on the failing pass's
/// backoff (1 s, 2 s, ...), not at the next change or the 5-minute resync; once it
/// succeeds, it is not run again.
#[test]
fn a_failed_folder_hook_is_retried_by_the_daemon_until_it_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, allow, log) = (
        tmp.path().join("out"),
        tmp.path().join("allow"),
        tmp.path().join("hook.log"),
    );
    // Fails for www.example.test until `allow` exists; logs each success.
    let hook = format!(
        "if [ \"$CERTSYNC_DOMAIN\" = www.example.test ] && [ ! -e {allow} ]; then echo no >&2; exit 3; fi; echo \"$CERTSYNC_DOMAIN\" >> {log}",
        allow = allow.display(),
        log = log.display()
    );
    let daemon = Daemon::start(
        &[
            "--acme",
            fixture("acme.json").to_str().unwrap(),
            "--all",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
            "--reload-command",
            &hook,
        ],
        &[],
    );
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    wait_until(Duration::from_secs(10), "two hooks run", || {
        lines().len() == 2
    });
    daemon.wait_log("failed with exit code 3", Duration::from_secs(5));
    std::fs::File::create(&allow).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the owed hook, by the retry alone",
        || lines().contains(&"www.example.test".to_owned()),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lines().len(),
        3,
        "each hook ran once after it succeeded: {:?}",
        lines()
    );
}

#[test]
fn include_and_exclude_match_main_and_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // turn-alt.example.test is a SAN of le's turn.example.test only.
    export(
        &fixture("acme.json"),
        &out,
        &[
            "--include",
            "TURN-ALT.example.test",
            "--include",
            "*.example.test",
            "--exclude",
            "www.*",
        ],
    )
    .expect_code(0);
    assert_eq!(
        folders(&out),
        ["_wildcard.example.test", "turn.example.test"]
    );

    let out = tmp.path().join("out2");
    export(
        &fixture("acme.json"),
        &out,
        &["--include", "turn-alt.example.test"],
    )
    .expect_code(0);
    assert_eq!(folders(&out), ["turn.example.test"]);
    assert_eq!(
        std::fs::read(out.join("turn.example.test/fullchain.pem")).unwrap(),
        b64_field(
            &Acme::load(&fixture("acme.json")).entry("le", "turn.example.test")["certificate"]
        ),
        "only le's entry has that SAN, so only it is exported"
    );

    let out = tmp.path().join("out3");
    export(&fixture("acme.json"), &out, &["--resolver", "le-ec"]).expect_code(0);
    assert_eq!(
        folders(&out),
        ["_wildcard.example.test", "turn.example.test"]
    );
}

#[test]
fn an_unsafe_name_and_a_bad_entry_fail_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (acme_path, out) = (tmp.path().join("acme.json"), tmp.path().join("out"));
    let mut acme = Acme::load(&fixture("acme.json"));
    let www = acme.entry("le", "www.example.test").clone();
    let certs = acme.0["le"]["Certificates"].as_array_mut().unwrap();
    for main in ["../escape", "-rf", "a\nb"] {
        let mut hostile = www.clone();
        hostile["domain"]["main"] = main.into();
        certs.push(hostile);
    }
    acme.swap_in_key("le-ec", "*.example.test", ("le", "www.example.test"));
    acme.write(&acme_path);
    let textfile = tmp.path().join("certsync.prom");

    export(
        &acme_path,
        &out,
        &["--textfile", textfile.to_str().unwrap()],
    )
    .expect_code(1)
    .expect_says(&[
        "\"../escape\" is not one safe folder name",
        "does not match the leaf",
    ]);
    assert_eq!(
        folders(&out),
        ["turn.example.test", "www.example.test"],
        "the good ones are written; nothing is made of the bad ones"
    );
    assert!(!tmp.path().join("escape").exists());
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    for line in [
        "certsync_sync_total{target=\"_wildcard.example.test\",result=\"error\"} 1",
        "certsync_sync_total{target=\"../escape\",result=\"error\"} 1",
        "certsync_sync_total{target=\"www.example.test\",result=\"written\"} 1",
        "certsync_certificate_not_after_seconds{target=\"turn.example.test\",domain=\"turn.example.test\"",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

#[test]
fn prune_removes_only_folders_certsync_created() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    export(&fixture("acme.json"), &out, &[]).expect_code(0);

    // What must survive: a foreign file and folder, a folder of certsync's holding a
    // file of the user's, and a link to a folder of certsync's made elsewhere.
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(out.join("old.example.test")).unwrap();
    std::fs::write(out.join("old.example.test/fullchain.pem"), b"mine").unwrap();
    std::fs::write(out.join("turn.example.test/dhparam.pem"), b"mine").unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    export(&fixture("acme.json"), &elsewhere, &[]).expect_code(0);
    std::os::unix::fs::symlink(
        elsewhere.join("www.example.test"),
        out.join("linked.example.test"),
    )
    .unwrap();

    export(
        &fixture("acme.json"),
        &out,
        &["--include", "nothing.test", "--prune"],
    )
    .expect_code(0)
    .expect_says(&[
        "removed the folder",
        "not pruned: it holds files certsync did not write",
    ]);
    assert_eq!(
        folders(&out),
        [
            "linked.example.test",
            "notes.txt",
            "old.example.test",
            "turn.example.test"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("old.example.test/fullchain.pem")).unwrap(),
        b"mine"
    );
    assert!(elsewhere.join("www.example.test/fullchain.pem").is_file());
    assert!(out.join("turn.example.test/fullchain.pem").is_file());

    // Without --prune, a certificate gone from the source keeps its folder.
    let kept = tmp.path().join("kept");
    export(&fixture("acme.json"), &kept, &[]).expect_code(0);
    export(&fixture("acme.json"), &kept, &["--include", "nothing.test"]).expect_code(0);
    assert_eq!(folders(&kept).len(), 3);
}

#[test]
fn a_symlinked_folder_is_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, victim) = (tmp.path().join("out"), tmp.path().join("victim"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("www.example.test")).unwrap();
    export(&fixture("acme.json"), &out, &[])
        .expect_code(1)
        .expect_says(&["is a symbolic link: not followed"]);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert!(out.join("turn.example.test/fullchain.pem").is_file());
}

#[test]
fn the_pkcs12_opens_with_its_password_only_and_java_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, password) = (tmp.path().join("out"), tmp.path().join("password"));
    std::fs::write(&password, "s3cret pass\n").unwrap();
    let args = [
        "--pkcs12-file",
        "cert.p12",
        "--pkcs12-password-file",
        password.to_str().unwrap(),
        "--key-mode",
        "0640",
    ];
    export(&fixture("acme.json"), &out, &args).expect_code(0);
    let p12 = out.join("turn.example.test/cert.p12");
    assert_eq!(mode(&p12), 0o640, "the PKCS#12 holds the key: --key-mode");
    let openssl = |pass: &str| {
        Command::new("openssl")
            .args(["pkcs12", "-in", p12.to_str().unwrap(), "-nodes", "-passin"])
            .arg(format!("pass:{pass}"))
            .output()
            .unwrap()
    };
    let good = openssl("s3cret pass");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let text = String::from_utf8_lossy(&good.stdout);
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf and intermediate"
    );
    assert!(text.contains("BEGIN PRIVATE KEY"));
    assert!(!openssl("").status.success(), "no password must fail");
    assert!(
        !openssl("wrong").status.success(),
        "a wrong password must fail"
    );

    let keytool = Command::new("keytool")
        .args([
            "-list",
            "-storetype",
            "PKCS12",
            "-storepass",
            "s3cret pass",
            "-keystore",
        ])
        .arg(&p12)
        .output()
        .unwrap();
    assert!(
        keytool.status.success(),
        "{}",
        String::from_utf8_lossy(&keytool.stdout)
    );
    assert!(String::from_utf8_lossy(&keytool.stdout).contains("PrivateKeyEntry"));

    // Same key, chain and password: the file is kept, not re-encrypted.
    let before = dir_state(&out.join("turn.example.test"));
    export(&fixture("acme.json"), &out, &args).expect_code(0);
    assert_eq!(dir_state(&out.join("turn.example.test")), before);
    // A new password re-encrypts it.
    std::fs::write(&password, "other").unwrap();
    export(&fixture("acme.json"), &out, &args).expect_code(0);
    assert!(openssl("other").status.success());

    // A password file that is one empty line is refused; an empty one is no password.
    std::fs::write(&password, "\n").unwrap();
    export(&fixture("acme.json"), &out, &args)
        .expect_code(1)
        .expect_says(&["an empty password needs an empty file"]);
    std::fs::write(&password, "").unwrap();
    export(&fixture("acme.json"), &out, &args).expect_code(0);
    assert!(openssl("").status.success());
}

#[test]
fn haproxy_serves_the_bundle_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    export(
        &fixture("acme.json"),
        &out,
        &["--bundle-file", "haproxy.pem"],
    )
    .expect_code(0);
    let bundle = out.join("www.example.test/haproxy.pem");
    assert_eq!(mode(&bundle), 0o600, "the bundle holds the key: --key-mode");

    let port = free_port();
    let cfg = tmp.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    log stderr local0\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             frontend tls\n    bind 127.0.0.1:{port} ssl crt {}\n    http-request return status 200 content-type text/plain string ok\n",
            bundle.display()
        ),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut haproxy = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = crate::support::wait_port(port, Duration::from_secs(10));
    let served = listening
        .then(|| crate::support::served_serial(&format!("127.0.0.1:{port}"), "www.example.test"))
        .flatten();
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let want = crate::support::file_serial(&out.join("www.example.test/fullchain.pem"));
    assert_eq!(served.as_deref(), Some(want.as_str()));
}

/// A live Traefik with three resolvers (RSA, EC, and a DNS-01 wildcard) against Pebble;
/// the EC one renews about once a minute (TESTBED.md). `--all` writes each certificate
/// as Traefik stored it; across a real renewal the daemon rewrites exactly the folders
/// whose entries changed, and runs the hook once for each of those only.
#[test]
fn a_live_traefik_renewal_rewrites_only_the_renewed_folder() {
    use crate::support::{read_certificate, Pebble, Resolver, Traefik};
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 1200);
    let mut traefik = Traefik::start(
        work.path(),
        &pebble,
        &[
            Resolver::new(
                "rsa",
                "RSA2048",
                &[&["a.example.test", "a-alt.example.test"]],
            ),
            Resolver::new("ec", "EC256", &[&["b.example.test"]]).certificates_duration_hours(1),
            Resolver::new("wild", "EC256", &[&["*.wild.example.test"]]),
        ],
    );
    let entries = [
        ("rsa", "a.example.test", "a.example.test"),
        ("ec", "b.example.test", "b.example.test"),
        ("wild", "*.wild.example.test", "_wildcard.wild.example.test"),
    ];
    for (resolver, main, _) in entries {
        traefik.wait_for(resolver, main, Duration::from_secs(90));
    }
    let acme = traefik.acme_json.clone();
    let (out, log) = (work.path().join("out"), work.path().join("hook.log"));
    let hook = format!("echo \"$CERTSYNC_DOMAIN\" >> {}", log.display());
    let daemon = Daemon::start(
        &[
            "--acme",
            acme.to_str().unwrap(),
            "--all",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
            "--reload-command",
            &hook,
        ],
        &[],
    );
    wait_until(Duration::from_secs(10), "three folders", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == 3)
    });
    std::fs::remove_file(&log).unwrap();
    // Traefik rewrites acme.json in place: read until a whole version is seen.
    let stored = || -> Vec<String> {
        loop {
            let read: Option<Vec<String>> = entries
                .iter()
                .map(|(r, m, _)| read_certificate(&acme, r, m))
                .collect();
            match read {
                Some(v) => return v,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    };
    let before = stored();
    let states = || -> Vec<DirState> {
        entries
            .iter()
            .map(|(_, _, f)| dir_state(&out.join(f)))
            .collect()
    };
    let written = states();
    for ((_, _, folder), cert) in entries.iter().zip(&before) {
        assert_eq!(
            std::fs::read(out.join(folder).join("fullchain.pem")).unwrap(),
            crate::support::b64_decode(cert),
            "{folder} is what Traefik stored"
        );
    }

    wait_until(Duration::from_secs(150), "a renewal by Traefik", || {
        stored()[1] != before[1]
    });
    let after = stored();
    let renewed: Vec<&str> = entries
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(e, _)| e.1)
        .collect();
    wait_until(Duration::from_secs(5), "the hook for the renewal", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= renewed.len())
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut hooked: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    hooked.sort();
    let mut want: Vec<String> = renewed.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        hooked,
        want,
        "one hook run per renewed certificate:\n{}",
        daemon.log()
    );
    for (i, ((_, main, folder), now)) in entries.iter().zip(states()).enumerate() {
        let changed = renewed.contains(main);
        assert_eq!(
            now != written[i],
            changed,
            "{folder}: rewritten iff renewed"
        );
        assert_eq!(
            std::fs::read(out.join(folder).join("fullchain.pem")).unwrap(),
            crate::support::b64_decode(&after[i]),
            "{folder}"
        );
    }
}
