//! `--pair-atomic`: a reader never gets a key from one certificate and a certificate
//! from another, while the source alternates between two as fast as the daemon follows.
//!
//! Two readers run during the rewrites. One opens `OUT/privkey.pem` then
//! `OUT/fullchain.pem`, as any program given those two paths does: each open resolves
//! `..current` on its own, so a swap between the two opens can still pair two
//! generations; its count is measured and printed, not asserted. The other resolves
//! `..current` once, then opens both files in that generation: that is the pair-atomic
//! promise, and it must never see a mismatch.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bin::*;
use crate::support::{file_serial, served_serial, Coturn};

/// Each version's (fullchain, key) for le/turn.example.test.
fn pair_of(acme: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut v = Acme(serde_json::from_slice(acme).unwrap());
    let entry = v.entry("le", "turn.example.test");
    (b64_field(&entry["certificate"]), b64_field(&entry["key"]))
}

#[derive(Debug, Default)]
struct Counts {
    reads: u64,
    mismatches: u64,
    /// The resolved generation was removed before both files were opened (a reader
    /// slower than two swaps); the read is retried, it is not a mismatch.
    gone: u64,
}

/// Opens the key, then the certificate, and reads both: which version each holds.
/// A file that is neither version (torn, empty) fails the test outright.
fn read_pair(key: &Path, cert: &Path, versions: &[(Vec<u8>, Vec<u8>); 2]) -> Option<bool> {
    let mut key_file = match std::fs::File::open(key) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("open {}: {e}", key.display()),
    };
    let mut cert_file = match std::fs::File::open(cert) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("open {}: {e}", cert.display()),
    };
    let (mut k, mut c) = (Vec::new(), Vec::new());
    key_file.read_to_end(&mut k).unwrap();
    cert_file.read_to_end(&mut c).unwrap();
    let key_version = versions
        .iter()
        .position(|(_, key)| *key == k)
        .unwrap_or_else(|| panic!("a torn or unknown key ({} bytes)", k.len()));
    let cert_version = versions
        .iter()
        .position(|(cert, _)| *cert == c)
        .unwrap_or_else(|| panic!("a torn or unknown certificate ({} bytes)", c.len()));
    Some(key_version == cert_version)
}

fn reader(
    stop: Arc<AtomicBool>,
    versions: [(Vec<u8>, Vec<u8>); 2],
    paths: impl Fn() -> Option<(PathBuf, PathBuf)> + Send + 'static,
) -> std::thread::JoinHandle<Counts> {
    std::thread::spawn(move || {
        let mut counts = Counts::default();
        while !stop.load(Ordering::Relaxed) {
            let Some((key, cert)) = paths() else {
                counts.gone += 1;
                continue;
            };
            match read_pair(&key, &cert, &versions) {
                Some(matched) => {
                    counts.reads += 1;
                    counts.mismatches += u64::from(!matched);
                }
                None => counts.gone += 1,
            }
        }
        counts
    })
}

struct Run {
    by_path: Counts,
    resolved: Option<Counts>,
    swaps: u32,
    out: PathBuf,
    daemon: Daemon,
    _tmp: tempfile::TempDir,
}

/// A daemon with `extra`, rewrites alternating the two versions, each awaited in the
/// output before the next, for `rounds` rounds; readers run throughout.
fn run(extra: &[&str], rounds: u32) -> Run {
    let (one, two) = two_versions();
    let versions = [pair_of(&one), pair_of(&two)];
    let tmp = tempfile::tempdir().unwrap();
    let (acme, out) = (tmp.path().join("src/acme.json"), tmp.path().join("out"));
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    std::fs::write(&acme, &one).unwrap();
    let mut args = vec![
        "--acme",
        acme.to_str().unwrap(),
        "--domain",
        "turn.example.test",
        "--resolver",
        "le",
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        "off",
        "--debounce",
        "1ms",
    ];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args, &[]);
    let fullchain = out.join("fullchain.pem");
    let holds = |v: usize| std::fs::read(&fullchain).is_ok_and(|c| c == versions[v].0);
    wait_until(Duration::from_secs(5), "the first pass", || holds(0));
    let pair_atomic = out.join("..current").exists();

    let stop = Arc::new(AtomicBool::new(false));
    let by_path = {
        let out = out.clone();
        reader(stop.clone(), versions.clone(), move || {
            Some((out.join("privkey.pem"), out.join("fullchain.pem")))
        })
    };
    let resolved = pair_atomic.then(|| {
        let out = out.clone();
        reader(stop.clone(), versions.clone(), move || {
            let generation = out.join(std::fs::read_link(out.join("..current")).ok()?);
            Some((
                generation.join("privkey.pem"),
                generation.join("fullchain.pem"),
            ))
        })
    });

    let mut swaps = 0;
    for round in 1..=rounds {
        let v = (round % 2) as usize;
        rewrite_in_place(&acme, if v == 0 { &one } else { &two });
        // Generous: a machine busy with other builds can stall a pass for seconds.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !holds(v) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the output did not follow\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        swaps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let by_path = by_path
        .join()
        .expect("the path reader saw only whole files");
    let resolved = resolved.map(|r| r.join().expect("the resolving reader saw only whole files"));
    Run {
        by_path,
        resolved,
        swaps,
        out,
        daemon,
        _tmp: tmp,
    }
}

#[test]
fn a_reader_of_the_current_generation_never_sees_a_mismatched_pair() {
    let r = run(&["--pair-atomic"], 200);
    let resolved = r.resolved.as_ref().expect("..current exists");
    eprintln!(
        "pair-atomic, {} swaps: resolving once: {} reads, {} mismatched, {} retried; \
         by path: {} reads, {} mismatched",
        r.swaps,
        resolved.reads,
        resolved.mismatches,
        resolved.gone,
        r.by_path.reads,
        r.by_path.mismatches
    );
    assert!(resolved.reads > 1000, "the reader ran: {resolved:?}");
    assert_eq!(resolved.mismatches, 0, "{resolved:?}");

    // What stays: the links, `..current`, this generation and the one before it. The
    // older one goes just after the swap the loop saw, so it is awaited.
    let names = || {
        let mut names: Vec<String> = dir_state(&r.out).into_keys().collect();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while names().len() != 5 {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}\n{}",
            names(),
            r.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let names = names();
    assert_eq!(&names[0], "..certsync-200");
    assert_eq!(&names[1], "..certsync-201");
    assert_eq!(names[2..], ["..current", "fullchain.pem", "privkey.pem"]);
    assert_eq!(
        std::fs::read_link(r.out.join("..current")).unwrap(),
        Path::new("..certsync-201")
    );
    assert_eq!(
        std::fs::read_link(r.out.join("privkey.pem")).unwrap(),
        Path::new("..current/privkey.pem")
    );
    let mode = |p: &Path| std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(p).unwrap());
    assert_eq!(mode(&r.out.join("..certsync-201")) & 0o7777, 0o755);
    assert_eq!(mode(&r.out.join("privkey.pem")) & 0o7777, 0o600);
}

/// The same rewrites with the plain, per-file renames: the count is printed for the
/// comparison, not asserted, since whether a read falls between two renames is luck.
#[test]
fn plain_renames_measured_for_comparison() {
    let r = run(&[], 200);
    assert!(r.resolved.is_none());
    eprintln!(
        "plain renames, {} swaps: by path: {} reads, {} mismatched",
        r.swaps, r.by_path.reads, r.by_path.mismatches
    );
    assert!(r.by_path.reads > 1000, "the reader ran: {:?}", r.by_path);
}

/// coturn keeps `cert=certs/fullchain.pem` and `pkey=certs/privkey.pem`: it reads them
/// through `..current`, and after a swap and SIGUSR2 serves the new generation.
#[test]
fn coturn_serves_each_generation_through_the_links() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    once_from("le", &certs, &["--pair-atomic"], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let coturn = Coturn::start(tmp.path(), &certs);
    assert_eq!(served_serial(&coturn.tls_addr(), DOMAIN), Some(old.clone()));
    let (pid, pidfile) = (coturn.pid(), coturn.pidfile());
    wait_until(Duration::from_secs(5), "coturn's pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid.to_string())
    });

    let addr = coturn.tls_addr();
    once_from(
        "le-ec",
        &certs,
        &[
            "--pair-atomic",
            "--signal-pid-file",
            pidfile.to_str().unwrap(),
            "--verify-tls",
            &addr,
        ],
        &[],
    )
    .expect_code(0)
    .expect_says(&["wrote", "serves the new certificate"]);
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_ne!(new, old);
    assert_eq!(served_serial(&addr, DOMAIN), Some(new));
    assert_eq!(coturn.pid(), pid, "reloaded in place, not restarted");
    assert_eq!(
        std::fs::read_link(certs.join("..current")).unwrap(),
        Path::new("..certsync-2")
    );
}
