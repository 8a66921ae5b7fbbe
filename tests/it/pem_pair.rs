//! `--pem-cert`/`--pem-key`: any PEM pair, and above all a Kubernetes TLS Secret as
//! the kubelet mounts and updates it. Pairs are made with rcgen; the folder is updated
//! exactly as the kubelet's atomic writer does it.

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bin::{certsync, dir_state, wait_until, Daemon};

/// A leaf certificate (PEM) and its key (PKCS#8 PEM) for `names`; `expired` makes one
/// that ended in 2020.
pub fn pair_made(names: &[&str], expired: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A valid pair for `names` (rcgen's default validity: 1975 to 4096).
pub fn pair(names: &[&str]) -> (String, String) {
    pair_made(names, false)
}

/// A Secret volume written the way the kubelet's AtomicWriter writes it: the payload
/// in a timestamped folder `..<time>`, `..data` a symlink to it, and `tls.crt` and
/// `tls.key` symlinks through `..data`.
struct SecretVolume {
    dir: PathBuf,
    current: Option<String>,
    generation: u32,
}

impl SecretVolume {
    fn new(dir: &Path) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        SecretVolume {
            dir: dir.to_owned(),
            current: None,
            generation: 0,
        }
    }

    /// One update: a new timestamped folder with the payload, a `..data_tmp` symlink
    /// to it renamed over `..data`, the user-visible links (first time only), then the
    /// old folder removed.
    fn update(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let name = format!(
            "..2026_11_23_15_50_{:02}.{:09}",
            self.generation % 60,
            self.generation
        );
        let folder = self.dir.join(&name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("tls.crt"), cert).unwrap();
        std::fs::write(folder.join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for file in ["tls.crt", "tls.key"] {
            let link = self.dir.join(file);
            if link.symlink_metadata().is_err() {
                symlink(format!("..data/{file}"), link).unwrap();
            }
        }
        if let Some(old) = self.current.replace(name) {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// A reload command that checks, with openssl, that the files the reload would make
/// coturn load are a matching pair, and appends `ok` or `MISMATCH` to `log`.
fn pair_checker(log: &Path) -> String {
    format!(
        "c=$(openssl x509 -noout -pubkey -in \"$CERTSYNC_CERT_FILE\" | sha256sum); \
         k=$(openssl pkey -pubout -in \"$CERTSYNC_KEY_FILE\" | sha256sum); \
         if [ \"$c\" = \"$k\" ]; then echo ok >> {log}; else echo MISMATCH >> {log}; fi",
        log = log.display()
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Over 50 kubelet swaps, one at a time and then in a burst: every swap is followed by
/// exactly one write and one reload, every reload sees a matching pair, a reader of
/// the out dir only ever sees whole files of known pairs, and the files end equal to
/// the last swap.
#[test]
fn kubelet_secret_swaps_give_one_pass_each_and_never_a_mismatched_pair() {
    const SWAPS: usize = 50;
    let work = tempfile::tempdir().unwrap();
    let mut volume = SecretVolume::new(&work.path().join("tls"));
    let pairs: Vec<(String, String)> = (0..=SWAPS * 2)
        .map(|_| pair(&["turn.example.test"]))
        .collect();
    volume.update(&pairs[0].0, &pairs[0].1);
    let key_of: Arc<HashMap<String, String>> = Arc::new(pairs.iter().cloned().collect());
    let keys: Arc<Vec<String>> = Arc::new(pairs.iter().map(|p| p.1.clone()).collect());

    let out = work.path().join("out");
    let checks = work.path().join("checks.log");
    let daemon = Daemon::start(
        &[
            "--pem-cert",
            volume.cert().to_str().unwrap(),
            "--pem-key",
            volume.key().to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
            "--reload-command",
            &pair_checker(&checks),
        ],
        &[("RUST_LOG", "certsync=debug")],
    );
    wait_until(Duration::from_secs(10), "the first pass", || {
        lines(&checks).len() == 1
    });

    // A reader beside coturn: whatever it reads must be a whole certificate and a whole
    // key of some pair the Secret held, never a torn or empty file.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, stop, key_of, keys) = (out.clone(), stop.clone(), key_of.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cert = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
                let key = std::fs::read_to_string(out.join("privkey.pem")).unwrap();
                assert!(key_of.contains_key(&cert), "a torn fullchain.pem: {cert:?}");
                assert!(keys.contains(&key), "a torn privkey.pem");
                reads += 1;
            }
            reads
        })
    };

    // One swap at a time: each is followed by its own write and reload.
    let started = Instant::now();
    for (i, (cert, key)) in pairs[1..=SWAPS].iter().enumerate() {
        volume.update(cert, key);
        wait_until(Duration::from_secs(10), "the swap's reload", || {
            lines(&checks).len() == i + 2
        });
        assert_eq!(
            &std::fs::read_to_string(out.join("fullchain.pem")).unwrap(),
            cert
        );
        assert_eq!(
            &std::fs::read_to_string(out.join("privkey.pem")).unwrap(),
            key
        );
    }
    let paced = started.elapsed();

    // A burst: swaps as fast as the writer goes, so that reads straddle swaps.
    for (cert, key) in &pairs[SWAPS + 1..] {
        volume.update(cert, key);
    }
    let last = pairs.last().unwrap();
    wait_until(Duration::from_secs(10), "the last swap's files", || {
        std::fs::read_to_string(out.join("fullchain.pem")).unwrap() == last.0
    });
    wait_until(Duration::from_secs(10), "the last reload", || {
        std::fs::read_to_string(out.join("privkey.pem")).unwrap() == last.1
            && daemon.log().matches("reloaded").count() == lines(&checks).len()
    });
    stop.store(true, Ordering::Relaxed);
    let reads = reader
        .join()
        .expect("the reader saw only whole, known files");

    let checked = lines(&checks);
    assert!(
        checked.iter().all(|l| l == "ok"),
        "a reload saw a mismatched pair: {checked:?}"
    );
    let log = daemon.log();
    let wrote = log.matches("wrote fullchain.pem, privkey.pem").count();
    let idle = log
        .matches("source rewritten with identical content")
        .count();
    let straddled = log.matches("does not match the certificate").count();
    eprintln!(
        "kubelet swaps: {SWAPS} paced in {paced:?} + {SWAPS} in a burst; {wrote} writes, \
         {} reloads, {idle} passes on unchanged content, {straddled} reads across a swap \
         retried, {reads} reads of the out dir",
        checked.len()
    );
    // The first pass, then one write per paced swap; a burst may coalesce.
    assert!(wrote > SWAPS && wrote <= 2 * SWAPS + 1, "{wrote} writes");
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(
        idle, 0,
        "a swap poked more than one pass (the folder's other events are not changes)"
    );
}

/// The out dir after a good first pass, for the bad-input cases to leave alone.
fn good_out(work: &Path, cert: &Path, key: &Path) -> PathBuf {
    let out = work.join("out");
    let (c, k) = pair(&["turn.example.test"]);
    std::fs::write(cert, c).unwrap();
    std::fs::write(key, k).unwrap();
    once_pem(cert, key, &out).expect_code(0);
    out
}

fn once_pem(cert: &Path, key: &Path, out: &Path) -> crate::support::bin::Run {
    certsync(&[
        "--once",
        "--pem-cert",
        cert.to_str().unwrap(),
        "--pem-key",
        key.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        "off",
    ])
}

/// Each bad input: exit 1, a message that says what is wrong, files untouched.
#[test]
fn bad_pem_pairs_are_refused_and_the_files_stay() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = (work.path().join("tls.crt"), work.path().join("tls.key"));
    let out = good_out(work.path(), &cert, &key);
    let before = dir_state(&out);
    let (good_cert, good_key) = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    );
    let (_, other_key) = pair(&["turn.example.test"]);
    let (old_cert, old_key) = pair_made(&["turn.example.test"], true);

    let cases: [(&str, &str, &str, &[&str]); 5] = [
        (
            "a key that does not match",
            &good_cert,
            &other_key,
            &["is not ready", "does not match the certificate"],
        ),
        (
            "an expired certificate",
            &old_cert,
            &old_key,
            &["the certificate expired"],
        ),
        (
            "a certificate that is not PEM",
            "not a certificate\n",
            &good_key,
            &["the certificate file is not PEM text"],
        ),
        (
            "an empty key mid-write",
            &good_cert,
            "",
            &["is not ready", "the key file is empty"],
        ),
        (
            "a certificate cut short mid-write",
            &good_cert[..good_cert.len() / 2],
            &good_key,
            &["is not ready", "the certificate file is cut short"],
        ),
    ];
    for (what, c, k, says) in cases {
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        let run = once_pem(&cert, &key, &out);
        run.expect_code(1).expect_says(says);
        assert!(
            !run.stderr.contains("PRIVATE KEY"),
            "{what}: a key in a message"
        );
        assert_eq!(dir_state(&out), before, "{what}: the out dir changed");
    }

    std::fs::remove_file(&key).unwrap();
    once_pem(&cert, &key, &out)
        .expect_code(1)
        .expect_says(&["tls.key does not exist (yet)"]);
    once_pem(&work.path().join("nowhere/tls.crt"), &key, &out)
        .expect_code(1)
        .expect_says(&["nowhere/tls.crt does not exist (yet)"]);
    assert_eq!(dir_state(&out), before);
}

/// The daemon waits out a pair that stays mismatched, then calls it a failure in
/// /healthz, and recovers on its own once the key is put right.
#[test]
fn a_lasting_mismatch_becomes_an_error_and_heals() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = (work.path().join("tls.crt"), work.path().join("tls.key"));
    let out = good_out(work.path(), &cert, &key);
    let good_key = std::fs::read(&key).unwrap();
    let metrics = format!("127.0.0.1:{}", crate::support::free_port());
    let daemon = Daemon::start(
        &[
            "--pem-cert",
            cert.to_str().unwrap(),
            "--pem-key",
            key.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
        &[],
    );
    daemon.wait_log("unchanged", Duration::from_secs(5));
    let before = dir_state(&out);
    std::fs::write(&key, pair(&["turn.example.test"]).1).unwrap();
    daemon.wait_log("does not match the certificate", Duration::from_secs(20));
    let (status, body) = crate::support::bin::http_get(&metrics, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not match"), "{body}");
    assert_eq!(dir_state(&out), before);

    std::fs::write(&key, good_key).unwrap();
    wait_until(Duration::from_secs(10), "healthy again", || {
        crate::support::bin::http_get(&metrics, "/healthz").0 == 200
    });
}

#[test]
fn list_shows_a_pem_pair_with_its_origin() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = (work.path().join("tls.crt"), work.path().join("tls.key"));
    let (c, k) = pair(&["turn.example.test", "alt.example.test"]);
    std::fs::write(&cert, c).unwrap();
    std::fs::write(&key, k).unwrap();
    let run = certsync(&[
        "list",
        "--pem-cert",
        cert.to_str().unwrap(),
        "--pem-key",
        key.to_str().unwrap(),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["main"], "turn.example.test");
    assert_eq!(row["sans"], serde_json::json!(["alt.example.test"]));
    assert_eq!(row["key_type"], "EC P-256");
    assert_eq!(row["origin"], cert.to_str().unwrap());
    assert!(row["serial"].as_str().is_some_and(|s| !s.is_empty()));

    // The same files as a certbot lineage.
    let lineage = work.path().join("live/turn.example.test");
    std::fs::create_dir_all(&lineage).unwrap();
    std::fs::copy(&cert, lineage.join("fullchain.pem")).unwrap();
    std::fs::copy(&key, lineage.join("privkey.pem")).unwrap();
    let run = certsync(&[
        "list",
        "--certbot-lineage",
        lineage.to_str().unwrap(),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows[0]["serial"], row["serial"]);
    assert_eq!(rows[0]["origin"], lineage.to_str().unwrap());
}

/// A pod whose Secret is mounted after certsync starts (or a Caddy started later):
/// the daemon waits for the files, writes them when they appear, then watches the
/// folder it could not watch at start, so the next swap is followed at once.
#[test]
fn a_source_that_appears_later_is_read_then_watched() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("not-yet/tls");
    let out = work.path().join("out");
    let daemon = Daemon::start(
        &[
            "--pem-cert",
            dir.join("tls.crt").to_str().unwrap(),
            "--pem-key",
            dir.join("tls.key").to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
            "--resync",
            "1h",
        ],
        &[],
    );
    daemon.wait_log("cannot watch the source", Duration::from_secs(5));
    let mut volume = SecretVolume::new(&dir);
    let first = pair(&["turn.example.test"]);
    volume.update(&first.0, &first.1);
    wait_until(Duration::from_secs(10), "the first files", || {
        std::fs::read_to_string(out.join("fullchain.pem")).is_ok_and(|c| c == first.0)
    });
    let second = pair(&["turn.example.test"]);
    let swapped = Instant::now();
    volume.update(&second.0, &second.1);
    wait_until(Duration::from_secs(10), "the swap's files", || {
        std::fs::read_to_string(out.join("fullchain.pem")).is_ok_and(|c| c == second.0)
    });
    // The not-ready retries stopped with the first success and the resync is an hour
    // away: only the watch can have seen the swap (in ms; seconds on a loaded machine).
    assert!(
        swapped.elapsed() < Duration::from_secs(5),
        "followed in {:?}",
        swapped.elapsed()
    );
}

/// The pod of the README, on one machine: coturn and a certsync daemon alone in a PID
/// namespace (`shareProcessNamespace`), certsync reading a Secret volume the kubelet's
/// way and signalling `turnserver` by name. Each swap is served by the same coturn
/// process, and a TLS connection opened before the swaps still gets answers.
#[test]
fn a_pod_follows_secret_swaps_and_signals_coturn_by_name() {
    use crate::support::stun::StunTls;
    use crate::support::{file_serial, served_serial, turnserver_bin, wait_served, CoturnConfig};

    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let mut volume = SecretVolume::new(&work.join("tls"));
    let first = pair(&["turn.example.test"]);
    volume.update(&first.0, &first.1);
    let certs = work.join("certs");
    once_pem(&volume.cert(), &volume.key(), &certs).expect_code(0);
    let coturn = CoturnConfig::write(work, &certs);
    let addr = coturn.tls_addr();
    let log = work.join("certsync.log");
    let script = format!(
        "{turnserver} -c {conf} >/dev/null 2>&1 &\n\
         exec {certsync} --pem-cert {cert} --pem-key {key} --out-dir {certs} \
           --signal-process turnserver --verify-tls {addr} --metrics-listen off >{log} 2>&1\n",
        turnserver = turnserver_bin().display(),
        conf = coturn.file.display(),
        certsync = env!("CARGO_BIN_EXE_certsync"),
        cert = volume.cert().display(),
        key = volume.key().display(),
        certs = certs.display(),
        log = log.display(),
    );
    let _pod = Namespace(
        std::process::Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
            ])
            .arg(&script)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("unshare (util-linux)"),
    );
    assert!(
        crate::support::wait_port(coturn.tls_port, Duration::from_secs(10)),
        "coturn in the pod"
    );
    let pidfile = coturn.file.with_file_name("turnserver.pid");
    wait_until(Duration::from_secs(5), "coturn's pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| !t.trim().is_empty())
    });
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    wait_until(Duration::from_secs(10), "certsync's first pass", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("unchanged"))
    });
    let mut call = StunTls::connect(coturn.tls_port, "turn.example.test").unwrap();
    let mapped = call.binding().expect("Binding before the swaps");

    let mut took = Vec::new();
    for _ in 0..3 {
        let next = pair(&["turn.example.test"]);
        let path = work.join("next.pem");
        std::fs::write(&path, &next.0).unwrap();
        let serial = file_serial(&path);
        let swapped = Instant::now();
        volume.update(&next.0, &next.1);
        wait_served(&addr, "turn.example.test", &serial, Duration::from_secs(15));
        took.push(swapped.elapsed());
    }
    let said = std::fs::read_to_string(&log).unwrap();
    eprintln!("pod: kubelet swap -> coturn serving: {took:?}");
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid, "{said}");
    assert_eq!(
        said.matches("sent SIGUSR2 to 1 process named turnserver")
            .count(),
        3,
        "{said}"
    );
    assert_eq!(
        call.binding()
            .expect("the connection opened before the swaps still gets answers"),
        mapped
    );
    assert!(served_serial(&addr, "turn.example.test").is_some());
    assert!(!said.contains("ERROR"), "{said}");
}

/// `unshare --kill-child`: killing it kills the namespace's init, and with it every
/// process of the namespace.
struct Namespace(std::process::Child);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
