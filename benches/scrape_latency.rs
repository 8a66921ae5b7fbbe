//! Does the daemon answer a scrape while it runs a pass over a big acme.json?
//!
//!     cargo build --release && cargo bench --bench scrape_latency [-- ROUNDS]
//!
//! Starts `target/release/certsync` (or `$CERTSYNC_BIN`) as a daemon on a
//! 5,000-certificate acme.json (about 29 MB) with `/metrics` on a loopback port, then,
//! ROUNDS times, rewrites the file in place with the selected entry changed (so every
//! pass reads the whole file, validates, writes and fsyncs) while a second thread asks
//! `/healthz` every 2 ms. It prints the latency of the health checks that overlapped a
//! pass (from the rewrite to the new fullchain.pem in place), and of `/metrics`
//! (5,000 series) asked between passes. A pass on the runtime thread would show here
//! as health checks as slow as the pass itself.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let bin = std::env::var_os("CERTSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/certsync"));
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release first",
        bin.display()
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let acme = tmp.path().join("acme.json");
    let out = tmp.path().join("out");
    let versions = two_big_versions();
    std::fs::write(&acme, &versions[0]).expect("write acme.json");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(&bin)
        .args(["--acme", acme.to_str().unwrap()])
        .args([
            "--domain",
            support::SELECTED,
            "--out-dir",
            out.to_str().unwrap(),
        ])
        .args(["--metrics-listen", &addr])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start certsync");
    let fullchain = out.join("fullchain.pem");
    wait(Duration::from_secs(30), || {
        fullchain.exists() && get(&addr, "/healthz").is_some()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let in_pass = Arc::new(AtomicBool::new(false));
    let during: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let prober = {
        let (stop, in_pass, during, addr) =
            (stop.clone(), in_pass.clone(), during.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = get(&addr, "/healthz").is_some_and(|(status, _)| status == 200);
                let took = started.elapsed();
                assert!(ok, "/healthz failed");
                if in_pass.load(Ordering::Relaxed) {
                    during.lock().unwrap().push(took);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let mut passes = Vec::new();
    let mut scrapes = Vec::new();
    for round in 0..rounds {
        let version = &versions[(round + 1) % 2];
        let before = std::fs::read(&fullchain).unwrap_or_default();
        in_pass.store(true, Ordering::Relaxed);
        let started = Instant::now();
        // In place, as Traefik writes it.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&acme)
            .and_then(|mut f| f.write_all(version))
            .expect("rewrite acme.json");
        wait(Duration::from_secs(30), || {
            std::fs::read(&fullchain).is_ok_and(|now| now != before)
        });
        passes.push(started.elapsed());
        in_pass.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let (status, body) = get(&addr, "/metrics").expect("/metrics answers");
        scrapes.push(started.elapsed());
        assert!(status == 200 && body.contains("certsync_acme_certificate_not_after_seconds"));
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().expect("prober");
    let _ = child.kill();
    let _ = child.wait();

    let during = std::mem::take(&mut *during.lock().unwrap());
    println!(
        "{rounds} passes over a {:.1} MB acme.json",
        versions[0].len() as f64 / 1e6
    );
    report("rewrite -> new fullchain.pem", passes);
    report("/healthz during a pass", during);
    report("/metrics (5,000 series)", scrapes);
}

/// The big file twice: in the second, the selected entry holds the fixture's
/// `*.example.test` certificate and key (which cover it too), so each rewrite changes
/// what the target's files hold.
fn two_big_versions() -> [Vec<u8>; 2] {
    let one = support::big_acme(5000);
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::fixture_path()).expect("fixture"))
            .expect("fixture");
    let wildcard = fixture["le-ec"]["Certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["domain"]["main"] == "*.example.test"))
        .expect("the fixture's wildcard entry")
        .clone();
    let mut doc: serde_json::Value = serde_json::from_slice(&one).expect("parses");
    let last = doc["le"]["Certificates"]
        .as_array_mut()
        .and_then(|c| c.last_mut())
        .expect("an entry");
    last["certificate"] = wildcard["certificate"].clone();
    last["key"] = wildcard["key"].clone();
    let two = serde_json::to_vec_pretty(&doc).expect("serialises");
    [one, two]
}

fn report(what: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("{what}: no sample");
        return;
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        v.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One HTTP/1.0 GET: status and body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
