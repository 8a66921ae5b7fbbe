//! Attacks that once worked, one test each: hostile input in acme.json, hostile
//! neighbours in the out dir, and sources that are not what they claim to be. Every
//! test here failed before its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::bin::*;
use crate::support::openssl_bin;

/// The files `--once` writes for `resolver` of the fixture: one matching pair.
fn pair_for(resolver: &str) -> (Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    once(
        &fixture("acme.json"),
        DOMAIN,
        tmp.path(),
        &["--resolver", resolver],
    )
    .expect_code(0);
    read_pair(tmp.path())
}

fn read_pair(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("fullchain.pem")).unwrap(),
        std::fs::read(dir.join("privkey.pem")).unwrap(),
    )
}

/// Runs certsync with `args`; `None` (after killing it) if it has not exited in `limit`.
fn run_within(args: &[&str], limit: Duration) -> Option<Run> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(Run {
                code: status.code().unwrap_or(-1),
                stdout: std::fs::read_to_string(&out).unwrap(),
                stderr: std::fs::read_to_string(&err).unwrap(),
            });
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An acme.json (v2 layout, resolver `le`) holding one entry per `(main, cert, key)`,
/// PEM text stored base64 as Traefik does.
fn acme_with(entries: &[(&str, &[u8], &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let certificates: Vec<_> = entries
        .iter()
        .map(|(main, cert, key)| {
            json!({
                "domain": {"main": main},
                "certificate": b64_encode(cert),
                "key": b64_encode(key),
                "Store": "default"
            })
        })
        .collect();
    let doc = json!({"le": {"Account": null, "Certificates": certificates}});
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("acme.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    (tmp, path)
}

/// A self-signed leaf for `DOMAIN` with a fresh key made by `openssl genpkey ARGS`.
fn openssl_pair(genpkey: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    let cert = tmp.path().join("cert.pem");
    let ok = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    ok(Command::new(openssl_bin())
        .arg("genpkey")
        .args(genpkey)
        .arg("-out")
        .arg(&key));
    let subject_alt = format!("subjectAltName=DNS:{DOMAIN}");
    let mut req = Command::new(openssl_bin());
    req.args(["req", "-x509", "-new", "-days", "30", "-subj"])
        .arg(format!("/CN={DOMAIN}"))
        .args([
            "-addext",
            &subject_alt,
            "-addext",
            "basicConstraints=CA:FALSE",
        ])
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if genpkey.contains(&"RSA-PSS") {
        req.args(["-sigopt", "rsa_padding_mode:pss"]);
    }
    ok(&mut req);
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

/// The certificate and key PEM of the fixture's RSA entry.
fn fixture_material() -> (Vec<u8>, Vec<u8>) {
    let mut acme = Acme::load(&fixture("acme.json"));
    let entry = acme.entry("le", DOMAIN);
    (b64_field(&entry["certificate"]), b64_field(&entry["key"]))
}

// ---------------------------------------------------------------------------------
// One writer per out dir

#[test]
fn two_writers_racing_never_leave_a_mismatched_pair() {
    let pairs = [pair_for("le"), pair_for("le-ec")];
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let acme = fixture("acme.json");
    let args = |resolver: &'static str| {
        vec![
            "--once".to_owned(),
            "--acme".into(),
            path_str(&acme).into(),
            "--domain".into(),
            DOMAIN.into(),
            "--out-dir".into(),
            path_str(out).into(),
            "--resolver".into(),
            resolver.into(),
            "--metrics-listen".into(),
            "off".into(),
        ]
    };
    for round in 0..300 {
        // Each round starts from the other pair, so both writers have work to do.
        let (first, second) = if round % 2 == 0 {
            ("le", "le-ec")
        } else {
            ("le-ec", "le")
        };
        let a = command().args(args(first)).output_async();
        let b = command().args(args(second)).output_async();
        for (child, resolver) in [(a, first), (b, second)] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, {resolver}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let now = read_pair(out);
        assert!(
            pairs.contains(&now),
            "round {round}: the out dir holds one writer's certificate and the other's key"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

trait SpawnOutput {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnOutput for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn a_held_lock_fails_the_target_and_says_who_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = fixture("acme.json");
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le"]).expect_code(0);
    let before = dir_state(tmp.path());
    let lock = std::fs::File::open(tmp.path().join(LOCK))
        .expect("the writer leaves its lock file in the out dir");
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();

    let started = Instant::now();
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le-ec"])
        .expect_code(1)
        .expect_says(&[&format!("another certsync writes {}", tmp.path().display())]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(dir_state(tmp.path()), before);

    drop(held);
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le-ec"]).expect_code(0);
    assert_eq!(read_pair(tmp.path()), pair_for("le-ec"));
}

#[test]
fn a_symlink_planted_as_the_lock_file_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = tmp.path().join("victim");
    std::os::unix::fs::symlink(&victim, out.join(LOCK)).unwrap();
    once(&fixture("acme.json"), DOMAIN, &out, &[])
        .expect_code(1)
        .expect_says(&[".certsync.lock"]);
    assert!(
        std::fs::symlink_metadata(&victim).is_err(),
        "nothing is created through the link"
    );
}

// ---------------------------------------------------------------------------------
// A file that cannot be replaced

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bind_mounted_key_keeps_the_old_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = fixture("acme.json");
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le"]).expect_code(0);
    let key = tmp.path().join("privkey.pem");
    // A file mounted over itself cannot be renamed over: EBUSY, as with a key
    // bind-mounted into a container.
    let status = Command::new("mount")
        .arg("--bind")
        .arg(&key)
        .arg(&key)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mount --bind needs root; the tests run as root"
    );
    let _unmount = Unmount(key.clone());
    let before = read_pair(tmp.path());

    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le-ec"]).expect_code(1);
    assert_eq!(read_pair(tmp.path()), before, "the old pair stays whole");
}

#[test]
fn an_immutable_key_keeps_the_old_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = fixture("acme.json");
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le"]).expect_code(0);
    let key = tmp.path().join("privkey.pem");
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&key)
            .status()
            .unwrap()
            .success()
    };
    assert!(
        chattr("+i"),
        "chattr +i needs root and ext4; the tests have both"
    );
    struct Mutable<'a>(&'a dyn Fn(&str) -> bool);
    impl Drop for Mutable<'_> {
        fn drop(&mut self) {
            (self.0)("-i");
        }
    }
    let _mutable = Mutable(&chattr);
    let before = read_pair(tmp.path());

    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le-ec"]).expect_code(1);
    assert_eq!(read_pair(tmp.path()), before, "the old pair stays whole");
}

#[test]
fn a_failed_second_rename_puts_the_first_file_back() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = fixture("acme.json");
    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le"]).expect_code(0);
    let before = std::fs::read(tmp.path().join("fullchain.pem")).unwrap();
    // A folder in the key's place: the certificate's rename succeeds, the key's
    // (EISDIR) cannot, after it.
    let key = tmp.path().join("privkey.pem");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    std::fs::write(key.join("x"), b"x").unwrap();

    once(&acme, DOMAIN, tmp.path(), &["--resolver", "le-ec"])
        .expect_code(1)
        .expect_says(&["left as they were"]);
    assert_eq!(
        std::fs::read(tmp.path().join("fullchain.pem")).unwrap(),
        before,
        "the certificate renamed first is put back"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------------
// What is written is what was parsed

#[test]
fn a_certificate_field_cut_short_is_refused() {
    let (cert, key) = fixture_material();
    let key_body: String = String::from_utf8(key.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    let truncated_intermediate = [
        cert.clone(),
        b"-----BEGIN CERTIFICATE-----\nMIIDSzCCAjOgAwIBAgIIFdd\n".to_vec(),
    ]
    .concat();
    let key_in_chain = [
        cert.clone(),
        format!("-----BEGIN PRIVATE KEY-----\n{key_body}\n").into_bytes(),
    ]
    .concat();
    for field in [truncated_intermediate, key_in_chain] {
        let (_t, acme) = acme_with(&[(DOMAIN, &field, &key)]);
        let tmp = tempfile::tempdir().unwrap();
        let run = once(&acme, DOMAIN, tmp.path(), &[]);
        run.expect_code(1).expect_says(&["cut short"]);
        assert!(!tmp.path().join("fullchain.pem").exists());
        assert!(!run.stderr.contains(&key_body[..60]));
    }
}

#[test]
fn text_around_the_blocks_is_not_copied() {
    let (cert, key) = fixture_material();
    let noisy = [
        b"subject=CN = turn.example.test\n".to_vec(),
        cert.clone(),
        b"trailing words\n".to_vec(),
    ]
    .concat();
    let (_t, acme) = acme_with(&[(DOMAIN, &noisy, &key)]);
    let tmp = tempfile::tempdir().unwrap();
    once(&acme, DOMAIN, tmp.path(), &[]).expect_code(0);
    assert_eq!(
        std::fs::read(tmp.path().join("fullchain.pem")).unwrap(),
        cert
    );
}

// ---------------------------------------------------------------------------------
// Keys

#[test]
fn keys_a_tls_server_uses_are_accepted_and_others_named() {
    let usable: [&[&str]; 3] = [
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        &[
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
            "-pkeyopt",
            "rsa_keygen_pubexp:3",
        ],
        &["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"],
    ];
    for genpkey in usable {
        let (cert, key) = openssl_pair(genpkey);
        let (_t, acme) = acme_with(&[(DOMAIN, &cert, &key)]);
        let tmp = tempfile::tempdir().unwrap();
        let run = once(&acme, DOMAIN, tmp.path(), &[]);
        assert_eq!(run.code, 0, "{genpkey:?}: {run:?}");
        assert_eq!(std::fs::read(tmp.path().join("privkey.pem")).unwrap(), key);
    }

    let (cert, key) = openssl_pair(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let (_t, acme) = acme_with(&[(DOMAIN, &cert, &key)]);
    once(&acme, DOMAIN, tempfile::tempdir().unwrap().path(), &[])
        .expect_code(1)
        .expect_says(&["RSA 1024 bits is too weak"]);

    let (cert, _) = openssl_pair(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let tmp = tempfile::tempdir().unwrap();
    let encrypted = tmp.path().join("enc.pem");
    let out = Command::new(openssl_bin())
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-aes256", "-pass", "pass:secret", "-out"])
        .arg(&encrypted)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_t, acme) = acme_with(&[(DOMAIN, &cert, &std::fs::read(&encrypted).unwrap())]);
    once(&acme, DOMAIN, tempfile::tempdir().unwrap().path(), &[])
        .expect_code(1)
        .expect_says(&["the private key is refused: it is encrypted"]);
}

/// Traefik's `keyType = "RSA8192"`. ring cannot load such a key; coturn can. Making
/// the key takes openssl half a minute, so it has its own test, run beside the others.
#[test]
fn an_rsa_8192_key_is_accepted() {
    let (cert, key) = openssl_pair(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:8192"]);
    let (_t, acme) = acme_with(&[(DOMAIN, &cert, &key)]);
    let tmp = tempfile::tempdir().unwrap();
    once(&acme, DOMAIN, tmp.path(), &[]).expect_code(0);
    assert_eq!(std::fs::read(tmp.path().join("privkey.pem")).unwrap(), key);
}

// ---------------------------------------------------------------------------------
// Sources that are not regular files, or too large

#[test]
fn a_fifo_as_the_source_is_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("acme.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = tmp.path().join("out");
    let limit = Duration::from_secs(8);

    let run = run_within(
        &[
            "--once",
            "--acme",
            path_str(&fifo),
            "--domain",
            DOMAIN,
            "--out-dir",
            path_str(&out),
        ],
        limit,
    )
    .expect("--once gives up on a FIFO");
    run.expect_code(1)
        .expect_says(&["a FIFO, not a regular file"]);

    let run =
        run_within(&["list", "--acme", path_str(&fifo)], limit).expect("list gives up on a FIFO");
    run.expect_code(1)
        .expect_says(&["a FIFO, not a regular file"]);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::start(
        &[
            "--acme",
            path_str(&fifo),
            "--domain",
            DOMAIN,
            "--out-dir",
            path_str(&out),
            "--metrics-listen",
            &addr,
        ],
        &[],
    );
    wait_until(limit, "/healthz to name the FIFO", || {
        std::net::TcpStream::connect(&addr).is_ok() && {
            let (status, body) = http_get(&addr, "/healthz");
            status == 503 && body.contains("FIFO")
        }
    });
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(3))
        .expect("SIGTERM ends the daemon");
    assert!(status.success(), "{}", daemon.log());
}

#[test]
fn endless_and_oversized_sources_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let limit = Duration::from_secs(20);
    let once_args = |acme: &Path, extra: &[&str]| {
        let mut args = vec![
            "--once".to_owned(),
            "--acme".into(),
            path_str(acme).into(),
            "--domain".into(),
            DOMAIN.into(),
            "--out-dir".into(),
            path_str(&out).into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_within(&args, limit).expect("certsync gives up")
    };
    run(once_args(Path::new("/dev/zero"), &[]))
        .expect_code(1)
        .expect_says(&["a character device, not a regular file"]);

    // Sparse: 600 MB on paper, nothing on disk; refused by its size before a read.
    let big = tmp.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(600_000_000)
        .unwrap();
    run(once_args(&big, &[]))
        .expect_code(1)
        .expect_says(&["larger than --max-source-size (600000000 bytes > 512000000)"]);

    let acme = fixture("acme.json");
    run(once_args(&acme, &["--max-source-size", "1KB"]))
        .expect_code(1)
        .expect_says(&["larger than --max-source-size"]);
    run(once_args(&acme, &["--max-source-size", "1MiB"])).expect_code(0);
    certsync(&[
        "--once",
        "--acme",
        path_str(&acme),
        "--domain",
        DOMAIN,
        "--out-dir",
        path_str(&out),
        "--max-source-size",
        "lots",
    ])
    .expect_code(2);
}

/// Hole 10: whitespace is read through, not kept. A valid acme.json behind 64 MiB of
/// spaces is read by a daemon whose peak memory stays far below the file's size (it
/// grew past the whole run of spaces before).
#[test]
fn a_long_run_of_whitespace_costs_no_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&acme).unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..64 {
            f.write_all(&spaces).unwrap();
        }
        f.write_all(&std::fs::read(fixture("acme.json")).unwrap())
            .unwrap();
    }
    let out = tmp.path().join("out");
    let daemon = Daemon::start(
        &[
            "--acme",
            path_str(&acme),
            "--domain",
            DOMAIN,
            "--out-dir",
            path_str(&out),
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    wait_until(
        Duration::from_secs(20),
        "the pair behind the spaces",
        || out.join("privkey.pem").exists(),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    assert!(
        peak_kb < 32 * 1024,
        "peak RSS {peak_kb} kB reading 64 MiB of whitespace"
    );
}

// ---------------------------------------------------------------------------------
// Names from acme.json in metrics and logs

/// The fixture plus a copy of its RSA entry whose main is `main`.
fn fixture_with_main(main: &str) -> (tempfile::TempDir, PathBuf) {
    let mut acme = Acme::load(&fixture("acme.json"));
    let mut evil = acme.entry("le", DOMAIN).clone();
    evil["domain"] = json!({"main": main});
    acme.0["le"]["Certificates"]
        .as_array_mut()
        .unwrap()
        .push(evil);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("acme.json");
    acme.write(&path);
    (tmp, path)
}

#[test]
fn a_main_name_cannot_forge_a_metric_series() {
    let forged = "x\"} 1\ncertsync_certificate_expired{target=\"victim\",domain=\"v\"} 1\n# x";
    let (tmp, acme) = fixture_with_main(forged);
    let textfile = tmp.path().join("certsync.prom");
    once(
        &acme,
        DOMAIN,
        &tmp.path().join("out"),
        &["--textfile", path_str(&textfile)],
    )
    .expect_code(0);
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains("certsync_acme_certificate_not_after_seconds"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("certsync_certificate_expired{target=\"victim\"")),
        "a forged series:\n{text}"
    );
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&textfile).unwrap())
        .output()
        .expect("promtool (tests/peers/install.sh installs it)");
    // promtool lints (exit 3) are about names and help text; a parse error is exit 1.
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.code() != Some(1) && !said.contains("error while linting"),
        "promtool: {said}\n{text}"
    );
}

#[test]
fn a_main_name_cannot_forge_a_log_line() {
    let mut acme = Acme::load(&fixture("acme.json"));
    acme.0["le"]["Certificates"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "domain": {"main": "evil\nERROR forged: the key was leaked\r\u{1b}[2J"},
            "certificate": "",
            "key": "",
            "Store": "default"
        }));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("acme.json");
    acme.write(&path);
    let run = once(&path, DOMAIN, &tmp.path().join("out"), &[]);
    run.expect_code(0).expect_says(&["skipping an entry"]);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("ERROR forged")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
}

// ---------------------------------------------------------------------------------
// Smaller gaps: each a usage error, caught before anything is read or written

#[test]
fn paths_and_ids_that_would_hurt_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let acme_dir = tmp.path().join("traefik");
    std::fs::create_dir(&acme_dir).unwrap();
    let acme = acme_dir.join("acme.json");
    std::fs::copy(fixture("acme.json"), &acme).unwrap();
    std::fs::set_permissions(&acme, std::fs::Permissions::from_mode(0o600)).unwrap();
    let original = std::fs::read(&acme).unwrap();
    let out = tmp.path().join("out");
    let textfile_in_out = out.join("privkey.pem");
    let via_dots = format!("{}/../traefik", out.display());

    let cases: [(&str, &Path, Vec<&str>, &str); 6] = [
        (".", &out, vec![], "is not a DNS name"),
        (
            DOMAIN,
            &out,
            vec!["--owner", "4294967295"],
            "not a usable user or group id",
        ),
        (
            DOMAIN,
            &out,
            vec!["--owner", "0:-1"],
            "not a usable user or group id",
        ),
        (
            DOMAIN,
            &out,
            vec!["--cert-file", "full\nchain.pem"],
            "must be a plain file name",
        ),
        (
            DOMAIN,
            Path::new(&via_dots),
            vec!["--cert-file", "acme.json"],
            "is the source itself",
        ),
        (
            DOMAIN,
            &out,
            vec!["--textfile", path_str(&textfile_in_out)],
            "the metrics would replace it",
        ),
    ];
    std::fs::create_dir(&out).unwrap();
    for (domain, dir, extra, says) in cases {
        once(&acme, domain, dir, &extra)
            .expect_code(2)
            .expect_says(&[says]);
    }
    assert_eq!(std::fs::read(&acme).unwrap(), original);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------
// A source reached through symlinks

#[test]
fn a_source_behind_kubernetes_style_links_is_followed() {
    let (one, two) = two_versions();
    let (rsa, ec) = (pair_for("le").0, pair_for("le-ec").0);
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("mount");
    std::fs::create_dir_all(mount.join("..v1")).unwrap();
    std::fs::write(mount.join("..v1/acme.json"), &one).unwrap();
    std::os::unix::fs::symlink("..v1", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/acme.json", mount.join("acme.json")).unwrap();
    let out = tmp.path().join("out");
    let _daemon = Daemon::start(
        &[
            "--acme",
            path_str(&mount.join("acme.json")),
            "--domain",
            DOMAIN,
            "--resolver",
            "le",
            "--out-dir",
            path_str(&out),
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    let serves = |want: &[u8], what: &str| {
        wait_until(Duration::from_secs(10), what, || {
            std::fs::read(out.join("fullchain.pem")).is_ok_and(|c| c == want)
        })
    };
    serves(&rsa, "the first pass");

    rewrite_in_place(&mount.join("..v1/acme.json"), &two);
    serves(&ec, "a rewrite of the file the links lead to");

    // The kubelet's update: a new folder, a new link renamed over `..data`, the old
    // folder removed.
    std::fs::create_dir(mount.join("..v2")).unwrap();
    std::fs::write(mount.join("..v2/acme.json"), &one).unwrap();
    std::os::unix::fs::symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..v1")).unwrap();
    serves(&rsa, "the swap of ..data");

    rewrite_in_place(&mount.join("..v2/acme.json"), &two);
    serves(&ec, "a rewrite in the folder the swapped link leads to");
}

// ---------------------------------------------------------------------------------
// A flood on the metrics port

/// `GET path`, or `None` if the listener does not answer within 2 s.
fn try_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
}

#[test]
fn thousands_of_half_open_connections_leave_healthz_and_renewals_working() {
    let (one, two) = two_versions();
    let ec = pair_for("le-ec").0;
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::write(&acme, &one).unwrap();
    let out = tmp.path().join("out");
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start(
        &[
            "--acme",
            path_str(&acme),
            "--domain",
            DOMAIN,
            "--resolver",
            "le",
            "--out-dir",
            path_str(&out),
            "--metrics-listen",
            &addr,
        ],
        &[],
    );
    wait_until(Duration::from_secs(10), "a healthy first pass", || {
        try_get(&addr, "/healthz").is_some_and(|(status, _)| status == 200)
    });
    // systemd's default soft limit for a service.
    let limited = Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg("--nofile=1024:1024")
        .status()
        .unwrap();
    assert!(limited.success());

    // Half-open: connected, a request line begun, never finished.
    let mut flood = Vec::new();
    for _ in 0..3000 {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &addr.parse().unwrap(),
            Duration::from_millis(200),
        ) else {
            continue;
        };
        let _ = std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.1\r\n");
        flood.push(s);
    }
    assert!(flood.len() > 1000, "{} connections opened", flood.len());

    rewrite_in_place(&acme, &two);
    wait_until(Duration::from_secs(15), "the renewal written", || {
        std::fs::read(out.join("fullchain.pem")).is_ok_and(|c| c == ec)
    });
    wait_until(Duration::from_secs(15), "/healthz during the flood", || {
        try_get(&addr, "/healthz").is_some_and(|(status, _)| status == 200)
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .count();
    assert!(fds < 300, "{fds} fds open in the daemon");
    drop(flood);
}
