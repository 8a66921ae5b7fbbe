//! The soak (`tests/soak.sh`, or `CERTSYNC_SOAK=1 bash tests/run.sh`): a live Traefik
//! renewing about once a minute for CERTSYNC_SOAK_MINUTES (15 by default), certsync
//! and coturn as units of a real systemd user manager (signal mode), and a TURN client
//! streaming over a TLS TCP relay the whole time. Every renewal must be served within
//! 1 s, no relayed message may be lost, and certsync's RSS and fd count stay flat.
//! Ignored in the normal run: it takes a quarter of an hour.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::bin::{free_port, http_get, once};
use crate::support::systemd::UserManager;
use crate::support::{
    b64_decode, pem_serial, read_certificate, served_serial, turnserver_bin, wait_port,
    CoturnConfig, Pebble, Resolver, Traefik,
};

const DOMAIN: &str = "turn.example.test";
/// How often the process is measured.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// turnutils_uclient's interval between messages, per client.
const MESSAGE_MS: u64 = 100;

/// One look at certsync's process.
struct Sample {
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("certsync (pid {pid}) is gone: {e}"));
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    Sample { rss_kib, fds }
}

fn minutes() -> u64 {
    std::env::var("CERTSYNC_SOAK_MINUTES")
        .ok()
        .map(|m| m.parse().expect("CERTSYNC_SOAK_MINUTES is a whole number"))
        .unwrap_or(15)
}

#[test]
#[ignore = "15 minutes: run by tests/soak.sh"]
fn soak_live_renewals_under_systemd_with_a_turn_stream() {
    let minutes = minutes();
    let soak = Duration::from_secs(minutes * 60);
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 1200);
    let resolver = Resolver::new("le", "EC256", &[&[DOMAIN]]).certificates_duration_hours(1);
    let mut traefik = Traefik::start(work.path(), &pebble, &[resolver]);
    traefik.wait_for("le", DOMAIN, Duration::from_secs(60));
    let acme = traefik.acme_json.clone();

    let m = UserManager::start();
    let certs = m.dir().join("certs");
    once(&acme, DOMAIN, &certs, &[]).expect_code(0);

    let coturn_unit = "coturn-soak.service";
    let coturn = CoturnConfig::write(m.dir(), &certs);
    m.install_unit(
        coturn_unit,
        &format!(
            "[Service]\nType=simple\nExecStart={} -c {}\n",
            turnserver_bin().display(),
            coturn.file.display()
        ),
    );
    m.start_unit(coturn_unit);
    assert!(
        wait_port(coturn.tls_port, Duration::from_secs(20)),
        "coturn:\n{}",
        coturn.log_text()
    );
    let coturn_pid = m.main_pid(coturn_unit);

    let certsync_unit = "certsync-soak.service";
    let metrics = format!("127.0.0.1:{}", free_port());
    let log = m.dir().join("certsync.log");
    let env: String = m
        .env()
        .iter()
        .map(|(k, v)| format!("Environment=\"{k}={v}\"\n"))
        .collect();
    m.install_unit(
        certsync_unit,
        &format!(
            "[Service]\nType=simple\n{env}StandardError=file:{log}\n\
             ExecStart={bin} --acme {acme} --domain {DOMAIN} --out-dir {certs} \
             --systemd-unit {coturn_unit} --systemd-bus user --reload-mode signal \
             --verify-tls {tls} --metrics-listen {metrics}\n",
            log = log.display(),
            bin = env!("CARGO_BIN_EXE_certsync"),
            acme = acme.display(),
            certs = certs.display(),
            tls = coturn.tls_addr(),
        ),
    );
    m.start_unit(certsync_unit);
    let pid = m.main_pid(certsync_unit);
    let certsync_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !certsync_log().contains("unchanged") {
        assert!(
            Instant::now() < deadline,
            "certsync did not start:\n{}",
            certsync_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Two clients (-y: client to client) relaying over TCP (RFC 6062) through TLS, for
    // the whole soak: each sends one message every MESSAGE_MS.
    let messages = minutes * 60 * 1000 / MESSAGE_MS;
    let client_log = work.path().join("uclient.log");
    let mut client = Command::new("turnutils_uclient")
        .args(["-T", "-S", "-m", "1", "-u", "certsync", "-w", "certsync"])
        .arg("-n")
        .arg(messages.to_string())
        .arg("-z")
        .arg(MESSAGE_MS.to_string())
        .arg("-p")
        .arg(coturn.tls_port.to_string())
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&client_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run turnutils_uclient (coturn-client)");

    let started = Instant::now();
    let mut samples: Vec<Sample> = vec![sample(pid)];
    let mut next_sample = started + SAMPLE_EVERY;
    let mut current = read_certificate(&acme, "le", DOMAIN).expect("Traefik's certificate");
    let mut lags: Vec<Duration> = Vec::new();
    let mut client_ended = None;
    // Samples before the first renewal are left out of "flat": the first reload opens
    // the D-Bus connection and the first TLS probe, allocations made once, not a leak.
    let mut steady_from = 0;
    while started.elapsed() < soak {
        if client_ended.is_none() {
            if let Some(status) = client.try_wait().unwrap() {
                client_ended = Some((started.elapsed(), status));
            }
        }
        if Instant::now() >= next_sample {
            samples.push(sample(pid));
            next_sample += SAMPLE_EVERY;
        }
        let renewed = match read_certificate(&acme, "le", DOMAIN) {
            Some(c) if c != current => c,
            _ => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let seen = Instant::now();
        let want = pem_serial(&b64_decode(&renewed));
        let served = loop {
            if served_serial(&coturn.tls_addr(), DOMAIN).as_deref() == Some(want.as_str()) {
                break seen.elapsed();
            }
            assert!(
                seen.elapsed() < Duration::from_secs(30),
                "renewal {want} not served after 30 s; certsync:\n{}",
                certsync_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!(
            "soak {:>4}s: renewal {want} served {} ms after acme.json changed",
            started.elapsed().as_secs(),
            served.as_millis()
        );
        if lags.is_empty() {
            steady_from = samples.len();
        }
        lags.push(served);
        current = renewed;
    }
    assert_eq!(
        m.main_pid(coturn_unit),
        coturn_pid,
        "coturn kept its process (signal mode)"
    );
    assert_eq!(m.main_pid(certsync_unit), pid, "certsync stayed up");
    let (_, metrics_text) = http_get(&metrics, "/metrics");

    let status = match client_ended {
        Some((at, status)) => {
            assert!(
                at + Duration::from_secs(90) >= soak,
                "the TURN stream ended {}s into a {}s soak",
                at.as_secs(),
                soak.as_secs()
            );
            status
        }
        None => {
            let deadline = Instant::now() + soak / 2 + Duration::from_secs(60);
            loop {
                if let Some(status) = client.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = client.kill();
                    panic!("turnutils_uclient still running long after the soak");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let client_text = std::fs::read_to_string(&client_log).unwrap();
    let total = client_text
        .lines()
        .rfind(|l| l.contains("Total lost packets"))
        .unwrap_or_else(|| panic!("no totals from turnutils_uclient ({status}):\n{client_text}"));
    let sent = client_text
        .lines()
        .rfind(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))
        .unwrap_or_default();
    eprintln!("soak: TURN stream: {} / {}", sent.trim(), total.trim());
    assert!(
        total.contains("Total lost packets 0 ("),
        "relayed messages lost: {total}"
    );
    let (s, r) = counts(sent);
    assert!(s > 0 && s == r, "sent {s}, received {r}: {sent}");

    // Renewals: about one a minute, each served within a second.
    eprintln!("soak: {} renewals, served after {lags:?}", lags.len());
    assert!(
        lags.len() as u64 + 2 >= minutes,
        "only {} renewals in {minutes} min",
        lags.len()
    );
    assert!(
        lags.iter().all(|l| *l < Duration::from_secs(1)),
        "a renewal was served after more than 1 s: {lags:?}"
    );
    assert!(
        metrics_text.contains("result=\"ok\""),
        "no successful reload in /metrics:\n{metrics_text}"
    );

    // Flat: the last quarter of the samples against the first, from the first renewal.
    let samples = &samples[steady_from..];
    let quarter = (samples.len() / 4).max(1);
    let (first, last) = (&samples[..quarter], &samples[samples.len() - quarter..]);
    let mean_rss = |s: &[Sample]| s.iter().map(|x| x.rss_kib).sum::<u64>() / s.len() as u64;
    let max_fds = |s: &[Sample]| s.iter().map(|x| x.fds).max().unwrap();
    let (rss0, rss1) = (mean_rss(first), mean_rss(last));
    let (fds0, fds1) = (max_fds(first), max_fds(last));
    eprintln!(
        "soak: {} samples from the first renewal; RSS {rss0} KiB -> {rss1} KiB (mean, \
         first vs last quarter); fds {fds0} -> {fds1} (max)",
        samples.len()
    );
    // Allocator arenas settle within a few MiB; a leak per renewal or per probe
    // would grow with the count.
    assert!(
        rss1 <= rss0 + rss0 / 10 + 1024,
        "RSS grew: {rss0} KiB -> {rss1} KiB"
    );
    assert!(fds1 <= fds0 + 1, "fds grew: {fds0} -> {fds1}");
}

/// (sent, received) from uclient's `tot_send_msgs=S, tot_recv_msgs=R` line.
fn counts(line: &str) -> (u64, u64) {
    let field = |name: &str| {
        line.split(name)
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    (field("tot_send_msgs="), field("tot_recv_msgs="))
}
