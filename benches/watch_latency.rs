//! The daemon's reaction time, and what it costs while idle.
//!
//!     cargo build --release && cargo bench --bench watch_latency [-- ROUNDS [BIG_ROUNDS [IDLE_SECS]]]
//!
//! Starts `target/release/certsync` (or `$CERTSYNC_BIN`) as a daemon with the default
//! settings but `--metrics-listen off` (or `$METRICS_LISTEN`), on a copy of the fixture
//! acme.json, then rewrites acme.json IN PLACE as Traefik does (open with truncate,
//! write everything, close), alternating two valid versions: the selected entry holds
//! one certificate, then another. For each rewrite it measures the time from the
//! `close` to the rename that puts the new fullchain.pem in place (seen by inotify on
//! the out dir), then checks the content. Pauses between rewrites vary from 50 to
//! 250 ms, so that a rewrite never lands in the previous pass.
//!
//! Then the same on a 5,000-certificate acme.json (about 29 MB), and the idle figures:
//! VmRSS after the first pass, after the rewrites and after a while idle, and the
//! context switches of all the daemon's threads during a quiet period (a daemon that
//! polls shows them; one that waits for events shows none).

#[path = "support/mod.rs"]
mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(200);
    let big_rounds = args.get(1).copied().unwrap_or(100);
    let idle = Duration::from_secs(args.get(2).copied().unwrap_or(30) as u64);
    let bin = std::env::var_os("CERTSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/certsync"));
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release first",
        bin.display()
    );
    println!("daemon: {}", bin.display());

    // The fixture: `turn.example.test` of resolver `le` is RSA, then the EC one of
    // `le-ec` (as tests/support/bin.rs `two_versions` does).
    let fixture = std::fs::read(support::fixture_path()).expect("the fixture acme.json");
    let (rsa, ec) = (
        entry(&fixture, "le", "turn.example.test"),
        entry(&fixture, "le-ec", "turn.example.test"),
    );
    let small = [fixture.clone(), swap_last(&fixture, &rsa, &ec)];
    let run = Run::start(&bin, &small[0], "turn.example.test", &["--resolver", "le"]);
    let rss_first = run.rss_kib();
    let small_latency = run.rewrites(&small, rounds, &[&rsa.0, &ec.0]);
    let rss_after = run.rss_kib();
    std::thread::sleep(idle);
    let rss_idle = run.rss_kib();
    let wakeups = run.wakeups_during(Duration::from_secs(20).min(idle));
    drop(run);

    // The big store: the last entry, `www.example.test`, holds its RSA certificate,
    // then the EC wildcard `*.example.test`, which covers it too.
    let big = support::big_acme(5000);
    let (www, wildcard) = (
        entry(&fixture, "le", support::SELECTED),
        entry(&fixture, "le-ec", "*.example.test"),
    );
    let bigs = [big.clone(), swap_last(&big, &www, &wildcard)];
    println!("big acme.json: {:.1} MB", big.len() as f64 / 1e6);
    let run = Run::start(&bin, &bigs[0], support::SELECTED, &[]);
    let big_rss_first = run.rss_kib();
    let big_latency = run.rewrites(&bigs, big_rounds, &[&www.0, &wildcard.0]);
    let big_rss_after = run.rss_kib();
    std::thread::sleep(idle);
    let big_rss_idle = run.rss_kib();
    let big_wakeups = run.wakeups_during(Duration::from_secs(20).min(idle));
    drop(run);

    println!();
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "end of write -> new fullchain.pem", "p50 ms", "p95 ms", "max ms", "rounds"
    );
    small_latency.print("fixture acme.json (25 kB)");
    big_latency.print("5,000 certificates (29 MB)");
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>14}",
        "daemon: VmRSS MB (RssAnon)", "first pass", "rewrites", "idle", "idle switches"
    );
    let idle_label = format!(
        "idle: after {} s; switches: in {} s",
        idle.as_secs(),
        idle.as_secs().min(20)
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>14}   ({idle_label})",
        "fixture acme.json",
        mb(rss_first),
        mb(rss_after),
        mb(rss_idle),
        wakeups
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>14}",
        "5,000 certificates",
        mb(big_rss_first),
        mb(big_rss_after),
        mb(big_rss_idle),
        big_wakeups
    );
}

fn mb((rss, anon): (u64, u64)) -> String {
    format!("{:.1} ({:.1})", rss as f64 / 1024.0, anon as f64 / 1024.0)
}

/// The base64 certificate and key of one entry of an acme.json.
fn entry(acme: &[u8], resolver: &str, main: &str) -> (String, String) {
    let doc: serde_json::Value = serde_json::from_slice(acme).expect("fixture parses");
    let e = doc[resolver]["Certificates"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["domain"]["main"] == main))
        .unwrap_or_else(|| panic!("{resolver} holds no {main}"));
    (
        e["certificate"].as_str().unwrap().to_owned(),
        e["key"].as_str().unwrap().to_owned(),
    )
}

/// `acme` with the last occurrence of one entry's certificate and key replaced: the
/// file keeps Traefik's layout, only the selected entry changes.
fn swap_last(acme: &[u8], from: &(String, String), to: &(String, String)) -> Vec<u8> {
    let mut text = String::from_utf8(acme.to_vec()).expect("UTF-8");
    for (old, new) in [(&from.0, &to.0), (&from.1, &to.1)] {
        let at = text.rfind(old.as_str()).expect("entry present");
        text.replace_range(at..at + old.len(), new);
    }
    text.into_bytes()
}

struct Run {
    child: Child,
    dir: tempfile::TempDir,
    events: mpsc::Receiver<Instant>,
    _watcher: notify::RecommendedWatcher,
}

impl Run {
    fn start(bin: &Path, acme: &[u8], domain: &str, extra: &[&str]) -> Run {
        let dir = tempfile::tempdir().expect("temporary folder");
        let (source, out) = (dir.path().join("acme.json"), dir.path().join("out"));
        std::fs::write(&source, acme).expect("write acme.json");
        std::fs::create_dir(&out).expect("out dir");
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            let Ok(e) = e else { return };
            let replaced = matches!(
                e.kind,
                EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            if replaced
                && e.paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| n == "fullchain.pem"))
            {
                let _ = tx.send(Instant::now());
            }
        })
        .expect("inotify");
        watcher
            .watch(&out, RecursiveMode::NonRecursive)
            .expect("watch the out dir");
        let child = Command::new(bin)
            .arg("--acme")
            .arg(&source)
            .args(["--domain", domain, "--metrics-listen", &metrics_listen()])
            .args(extra)
            .arg("--out-dir")
            .arg(&out)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start certsync");
        let run = Run {
            child,
            dir,
            events,
            _watcher: watcher,
        };
        run.events
            .recv_timeout(Duration::from_secs(10))
            .expect("the first pass writes fullchain.pem");
        // The first pass writes the key after the chain; measure from its end.
        let key = run.dir.path().join("out/privkey.pem");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !key.exists() {
            assert!(
                Instant::now() < deadline,
                "the first pass wrote fullchain.pem but no privkey.pem within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        while run.events.try_recv().is_ok() {}
        run
    }

    /// Rewrites acme.json in place `rounds` times, alternating `versions`; `chains` are
    /// the base64 certificates each version puts in fullchain.pem, to check the result.
    fn rewrites(&self, versions: &[Vec<u8>; 2], rounds: usize, chains: &[&String; 2]) -> Latencies {
        use base64::Engine;
        let source = self.dir.path().join("acme.json");
        let fullchain = self.dir.path().join("out/fullchain.pem");
        let expected: Vec<Vec<u8>> = chains
            .iter()
            .map(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(c.as_bytes())
                    .unwrap()
            })
            .collect();
        let mut samples = Vec::with_capacity(rounds);
        let mut missed = 0;
        for round in 0..rounds {
            let v = (round + 1) % 2;
            // 50..250 ms, varied so that the rewrites do not beat in step with anything.
            std::thread::sleep(Duration::from_millis(50 + (round as u64 * 37) % 200));
            while self.events.try_recv().is_ok() {}
            let mut f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&source)
                .expect("open acme.json");
            f.write_all(&versions[v]).expect("write acme.json");
            drop(f);
            let written = Instant::now();
            match self.events.recv_timeout(Duration::from_secs(5)) {
                Ok(at) => samples.push(at.saturating_duration_since(written)),
                Err(_) => {
                    missed += 1;
                    continue;
                }
            }
            // The rename is atomic: what the event announced is what a reader gets.
            let got = std::fs::read(&fullchain).expect("fullchain.pem");
            assert_eq!(
                got, expected[v],
                "round {round}: fullchain.pem is not the new version"
            );
        }
        Latencies { samples, missed }
    }

    /// VmRSS, and the part of it that is the process's own memory (RssAnon), not
    /// mapped files (the binary's pages).
    fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        (field(&status, "VmRSS:"), field(&status, "RssAnon:"))
    }

    /// Voluntary plus involuntary context switches of every thread during `quiet`.
    fn wakeups_during(&self, quiet: Duration) -> u64 {
        let before = self.switches();
        std::thread::sleep(quiet);
        self.switches() - before
    }

    fn switches(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
            .map(|s| {
                field(&s, "voluntary_ctxt_switches:") + field(&s, "nonvoluntary_ctxt_switches:")
            })
            .sum()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// `off` unless `METRICS_LISTEN` says where: with metrics on, the daemon also reads
/// the not-after of every certificate when the file changed.
fn metrics_listen() -> String {
    std::env::var("METRICS_LISTEN").unwrap_or_else(|_| "off".into())
}

fn field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Latencies {
    samples: Vec<Duration>,
    missed: usize,
}

impl Latencies {
    fn print(&self, label: &str) {
        let mut ms: Vec<f64> = self.samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let missed = if self.missed > 0 {
            format!("  ({} never seen within 5 s)", self.missed)
        } else {
            String::new()
        };
        println!(
            "{label:<34} {:>8.1} {:>8.1} {:>8.1} {:>8}{missed}",
            at(0.5),
            at(0.95),
            at(1.0),
            ms.len()
        );
    }
}
