//! The daemon (`certsync` without `--once`): it follows every way acme.json changes,
//! never exposes a partial output file, and handles its signals.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::bin::*;

/// A source folder with the fixture's acme.json, an out dir, and a daemon on them.
struct Setup {
    tmp: tempfile::TempDir,
    daemon: Daemon,
}

impl Setup {
    fn start(extra: &[&str]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("src")).unwrap();
        std::fs::copy(fixture("acme.json"), tmp.path().join("src/acme.json")).unwrap();
        Setup::start_in(tmp, extra)
    }

    fn start_in(tmp: tempfile::TempDir, extra: &[&str]) -> Setup {
        let acme = tmp.path().join("src/acme.json");
        let out = tmp.path().join("out");
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
        ];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&args, &[]);
        Setup { tmp, daemon }
    }

    fn acme(&self) -> std::path::PathBuf {
        self.tmp.path().join("src/acme.json")
    }

    fn fullchain(&self) -> Vec<u8> {
        std::fs::read(self.tmp.path().join("out/fullchain.pem")).unwrap_or_default()
    }

    fn out(&self) -> std::path::PathBuf {
        self.tmp.path().join("out")
    }

    /// Waits until fullchain.pem holds `version`'s certificate for le/turn.example.test.
    #[track_caller]
    fn wait_for(&self, version: &[u8]) {
        let want = expected_fullchain(version);
        wait_until(
            Duration::from_secs(5),
            "fullchain.pem to follow acme.json",
            || self.fullchain() == want,
        );
    }
}

fn expected_fullchain(acme: &[u8]) -> Vec<u8> {
    let mut v = Acme(serde_json::from_slice(acme).unwrap());
    b64_field(&v.entry("le", "turn.example.test")["certificate"])
}

#[test]
fn follows_in_place_rewrites_renames_and_recreation() {
    let (one, two) = two_versions();
    let s = Setup::start(&[]);
    s.wait_for(&one);

    rewrite_in_place(&s.acme(), &two);
    s.wait_for(&two);

    // Replaced by rename, as editors and `mv` do.
    let staged = s.tmp.path().join("src/acme.json.new");
    std::fs::write(&staged, &one).unwrap();
    std::fs::rename(&staged, s.acme()).unwrap();
    s.wait_for(&one);

    // Deleted, then created again: the files in place stay meanwhile. The daemon says
    // when it has seen the deletion; by then a wrong reaction would have happened.
    std::fs::remove_file(s.acme()).unwrap();
    s.daemon
        .wait_log("waiting for the source to appear", Duration::from_secs(5));
    assert_eq!(
        s.fullchain(),
        expected_fullchain(&one),
        "a missing source deletes nothing"
    );
    std::fs::write(s.acme(), &two).unwrap();
    s.wait_for(&two);
}

#[test]
fn a_missing_source_is_awaited_and_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    let s = Setup::start_in(tmp, &[]);
    s.daemon
        .wait_log("waiting for the source to appear", Duration::from_secs(5));
    // A window in which a daemon that polls, or logs every retry, would say it again;
    // it ends with the positive sync point of the source's first pass.
    std::thread::sleep(Duration::from_millis(500));
    let (one, _) = two_versions();
    std::fs::write(s.acme(), &one).unwrap();
    s.wait_for(&one);
    assert_eq!(
        s.daemon.log().matches("waiting for the source").count(),
        1,
        "{}",
        s.daemon.log()
    );
}

/// Traefik truncates and rewrites in place; a reader can catch it half-written. Here
/// a writer does that slowly, in chunks, many times, while a reader checks that the
/// output files are always complete and always one of the two versions.
#[test]
fn slow_in_place_rewrites_never_expose_a_partial_output() {
    let (one, two) = two_versions();
    let s = Setup::start(&[]);
    s.wait_for(&one);
    let valid = [expected_fullchain(&one), expected_fullchain(&two)];
    let key_valid = {
        let mut a = Acme(serde_json::from_slice(&one).unwrap());
        let mut b = Acme(serde_json::from_slice(&two).unwrap());
        [
            b64_field(&a.entry("le", "turn.example.test")["key"]),
            b64_field(&b.entry("le", "turn.example.test")["key"]),
        ]
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, out) = (stop.clone(), s.out());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cert =
                    std::fs::read(out.join("fullchain.pem")).expect("fullchain.pem always exists");
                let key =
                    std::fs::read(out.join("privkey.pem")).expect("privkey.pem always exists");
                assert!(
                    valid.contains(&cert),
                    "a torn or empty fullchain.pem ({} bytes)",
                    cert.len()
                );
                assert!(
                    key_valid.contains(&key),
                    "a torn or empty privkey.pem ({} bytes)",
                    key.len()
                );
                reads += 1;
            }
            reads
        })
    };
    let acme = s.acme();
    let rounds = 20;
    for round in 0..rounds {
        let content = if round % 2 == 0 { &two } else { &one };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&acme)
            .unwrap();
        for chunk in content.chunks(content.len() / 8 + 1) {
            std::io::Write::write_all(&mut f, chunk).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        drop(f);
        // Traefik's pace between rewrites; whether the daemon kept up is what the
        // reader and the final wait_for check.
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = if (rounds - 1) % 2 == 0 { &two } else { &one };
    s.wait_for(last);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(reads > 100, "the reader ran ({reads} reads)");
    let names: Vec<String> = dir_state(&s.out()).into_keys().collect();
    assert_eq!(
        names,
        ["fullchain.pem", "privkey.pem"],
        "no temporary file left"
    );
}

#[test]
fn sigterm_exits_0_within_two_seconds() {
    let (one, _) = two_versions();
    let mut s = Setup::start(&[]);
    s.wait_for(&one);
    let start = std::time::Instant::now();
    s.daemon.signal(Signal::SIGTERM);
    let status = s
        .daemon
        .wait_exit(Duration::from_secs(2))
        .expect("exited within 2 s");
    assert!(status.success(), "{status:?}\n{}", s.daemon.log());
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(dir_state(&s.out()).len(), 2, "no temporary file left");

    // SIGINT too.
    let mut s = Setup::start(&[]);
    s.daemon.wait_log("wrote", Duration::from_secs(5));
    s.daemon.signal(Signal::SIGINT);
    assert!(s
        .daemon
        .wait_exit(Duration::from_secs(2))
        .expect("exited within 2 s")
        .success());
}

/// Issue: SIGTERM during a change pass that runs a 20 s reload command took 19 s.
/// Shutdown abandons the pass mid-reload, kills the command's process group, and
/// leaves no temporary file.
#[test]
fn sigterm_during_a_slow_reload_exits_0_within_two_seconds() {
    let (one, two) = two_versions();
    let tmp = tempfile::tempdir().unwrap();
    let (slow, marker) = (tmp.path().join("slow"), tmp.path().join("reload-started"));
    // Quick for the first pass, 20 s for the change pass that follows.
    let cmd = format!(
        "[ -e {slow} ] || exit 0; echo $$ > {marker}; exec sleep 20",
        slow = slow.display(),
        marker = marker.display()
    );
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    std::fs::write(tmp.path().join("src/acme.json"), &one).unwrap();
    let mut s = Setup::start_in(tmp, &["--reload-command", &cmd]);
    s.wait_for(&one);
    s.daemon.wait_log("reloaded", Duration::from_secs(5));
    std::fs::write(&slow, b"").unwrap();
    rewrite_in_place(&s.acme(), &two);
    wait_until(
        Duration::from_secs(10),
        "the change pass's reload to start",
        || std::fs::read_to_string(&marker).is_ok_and(|p| !p.trim().is_empty()),
    );
    let sleeper: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = std::time::Instant::now();
    s.daemon.signal(Signal::SIGTERM);
    let status = s
        .daemon
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("still running 2 s after SIGTERM\n{}", s.daemon.log()));
    assert!(status.success(), "{status:?}\n{}", s.daemon.log());
    assert!(start.elapsed() < Duration::from_secs(2));
    // Killed: gone, or a zombie waiting for an init that reaps it.
    wait_until(
        Duration::from_secs(1),
        "the reload command to be killed",
        || {
            std::fs::read_to_string(format!("/proc/{sleeper}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        },
    );
    let left: Vec<String> = dir_state(&s.out())
        .keys()
        .filter(|n| n.contains(".certsync-") && n.ends_with(".tmp"))
        .cloned()
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Issue: `--resync 0s` and `WATCHDOG_USEC=1` panicked (exit 101). Every duration is
/// checked when the config is read: exit 2 with a message.
#[test]
fn zero_durations_and_a_tiny_watchdog_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = fixture("acme.json");
    let out = tmp.path().join("out");
    let base = [
        "--acme",
        acme.to_str().unwrap(),
        "--domain",
        "turn.example.test",
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        "off",
    ];
    for (flag, says) in [("--resync", "resync"), ("--debounce", "debounce")] {
        let mut args = base.to_vec();
        args.extend([flag, "0s"]);
        certsync(&args)
            .expect_code(2)
            .expect_says(&[says, "longer than zero"]);
    }
    // Without WATCHDOG_PID, the watchdog applies to whichever process reads it.
    certsync_env(&base, &[("WATCHDOG_USEC", "1")])
        .expect_code(2)
        .expect_says(&["WATCHDOG_USEC=1"]);
    assert!(
        !out.exists(),
        "nothing written before the config is checked"
    );
}

fn write_config(path: &Path, acme: &Path, targets: &[(&str, &str, &Path)]) {
    let mut text = format!(
        "acme = {:?}\nmetrics_listen = \"off\"\n",
        acme.to_str().unwrap()
    );
    for (name, domain, out) in targets {
        text.push_str(&format!(
            "\n[[target]]\nname = {name:?}\ndomain = {domain:?}\nout_dir = {:?}\n",
            out.to_str().unwrap()
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn two_targets_from_one_config_and_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::copy(fixture("acme.json"), &acme).unwrap();
    let config = tmp.path().join("certsync.toml");
    let (turn, www, relay) = (
        tmp.path().join("turn"),
        tmp.path().join("www"),
        tmp.path().join("relay"),
    );
    write_config(
        &config,
        &acme,
        &[
            ("turn", "turn.example.test", &turn),
            ("www", "www.example.test", &www),
        ],
    );
    let d = Daemon::start(&["--config", config.to_str().unwrap()], &[]);
    wait_until(Duration::from_secs(5), "both targets", || {
        turn.join("privkey.pem").exists() && www.join("privkey.pem").exists()
    });

    // A broken config is refused; the old one stays in force.
    std::fs::write(&config, "acme = 5\n[[target]]\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_log("the old one stays in force", Duration::from_secs(5));

    // A good one adds a target.
    write_config(
        &config,
        &acme,
        &[
            ("turn", "turn.example.test", &turn),
            ("relay", "relay.example.test", &relay),
        ],
    );
    d.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), "the new target", || {
        relay.join("privkey.pem").exists()
    });
    d.wait_log("configuration re-read", Duration::from_secs(1));
}

#[test]
fn ready_after_the_first_pass_then_watchdog_pings() {
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let acme = fixture("acme.json");
    let out = tmp.path().join("out");
    // As systemd does for WatchdogSec=200ms: WATCHDOG_USEC, and WATCHDOG_PID naming the
    // service's own pid (certsync ignores a watchdog meant for another process).
    let mut child = command()
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .args([
            "--acme",
            acme.to_str().unwrap(),
            "--domain",
            "turn.example.test",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            "off",
        ])
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut first = next();
    while first.contains("WATCHDOG=1") {
        first = next();
    }
    assert!(first.contains("READY=1"), "{first}");
    assert!(
        out.join("fullchain.pem").exists(),
        "READY=1 comes after the files are in place"
    );
    let start = std::time::Instant::now();
    let pings = (0..5).filter(|_| next().contains("WATCHDOG=1")).count();
    assert_eq!(pings, 5);
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "5 pings took {:?}",
        start.elapsed()
    );
}
