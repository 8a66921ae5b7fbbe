//! Faults against the running daemon: after each, it stays up, /healthz says what is
//! wrong, the files in place stay a matching pair, and it recovers by itself once the
//! fault is gone, without a change in the source to wake it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::bin::*;
use crate::support::docker::{unique, CoturnContainer, SocketProxy};
use crate::support::systemd::UserManager;
use crate::support::{
    file_serial, served_serial, turnserver_bin, wait_port, wait_served, Coturn, CoturnConfig,
};

/// The fullchain.pem `--once` writes for `resolver` of the fixture.
fn fullchain_for(resolver: &str) -> (Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    once(
        &fixture("acme.json"),
        DOMAIN,
        tmp.path(),
        &["--resolver", resolver],
    )
    .expect_code(0);
    (
        std::fs::read(tmp.path().join("fullchain.pem")).unwrap(),
        std::fs::read(tmp.path().join("privkey.pem")).unwrap(),
    )
}

fn pair_in(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("fullchain.pem")).unwrap(),
        std::fs::read(dir.join("privkey.pem")).unwrap(),
    )
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_out_dir_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out));
    let _unmount = Unmount(&out);
    survives(
        &out,
        &[],
        |out| {
            let mut f = std::fs::File::create(out.join("filler")).unwrap();
            while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
        },
        "No space left on device",
        |out| std::fs::remove_file(out.join("filler")).unwrap(),
    );
}

/// A daemon keeping `le`'s certificate in `out` (made by the caller), then: `fault`
/// is applied and the source renewed; /healthz must say `says` while the old pair
/// stays whole and the daemon up; `clear` ends the fault, and the new pair must come
/// by itself.
fn survives(
    out: &Path,
    extra: &[&str],
    fault: impl FnOnce(&Path),
    says: &str,
    clear: impl FnOnce(&Path),
) {
    survives_under(
        &[],
        out,
        extra,
        |at| fault(at.out),
        says,
        |at| clear(at.out),
    );
}

/// Where a fault is applied: the daemon's out dir, its source and its pid.
struct At<'a> {
    out: &'a Path,
    acme: &'a Path,
    pid: i32,
}

/// [`survives`] with the daemon run by `prefix` (e.g. `setpriv`), and faults that
/// may touch the source or the process.
fn survives_under(
    prefix: &[&str],
    out: &Path,
    extra: &[&str],
    fault: impl FnOnce(&At),
    says: &str,
    clear: impl FnOnce(&At),
) {
    let (one, two) = two_versions();
    let (rsa, ec) = (fullchain_for("le"), fullchain_for("le-ec"));
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::write(&acme, &one).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = daemon_args(&acme, out, &addr);
    args.extend_from_slice(extra);
    let mut daemon = Daemon::start_from(command_under(prefix), &args, &[]);
    wait_until(Duration::from_secs(10), "the first pair", || {
        out.join("privkey.pem").exists() && pair_in(out) == rsa
    });
    let at = At {
        out,
        acme: &acme,
        pid: daemon.pid(),
    };

    fault(&at);
    rewrite_in_place(&acme, &two);
    healthz_names(&addr, says, &daemon);
    assert_eq!(pair_in(out), rsa, "the old pair stays whole");
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon stays up"
    );

    clear(&at);
    // Nothing announces the end of a fault: the failing pass's backoff (1 s, 2 s, 4 s,
    // 8 s, ...) finds it. Under load the fault can last past the 4 s step, so the next
    // try may be up to 8 s away; 20 s leaves room without hiding a daemon that stopped
    // retrying.
    let recovered = poll(Duration::from_secs(20), || pair_in(out) == ec);
    assert!(
        recovered,
        "the new pair did not come once the fault was gone\nlog:\n{}",
        daemon.log()
    );
    wait_until(Duration::from_secs(5), "/healthz healthy again", || {
        http_get(&addr, "/healthz").0 == 200
    });
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}");
}

#[test]
fn a_read_only_out_dir_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("mount").arg("--bind").arg(&out).arg(&out));
    let _unmount = Unmount(&out);
    survives(
        &out,
        &[],
        |out| {
            run(Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(out))
        },
        "Read-only file system",
        |out| {
            run(Command::new("mount")
                .args(["-o", "remount,rw,bind"])
                .arg(out))
        },
    );
}

#[test]
fn a_deleted_owner_group_is_survived() {
    let group = format!("certsync-f{}", std::process::id());
    run(Command::new("groupadd").arg(&group));
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("groupdel").arg(&self.0).status();
        }
    }
    let _gone = Gone(group.clone());
    let tmp = tempfile::tempdir().unwrap();
    let owner = format!("0:{group}");
    survives(
        &tmp.path().join("out"),
        &["--owner", &owner],
        |_| run(Command::new("groupdel").arg(&group)),
        "unknown group",
        |_| run(Command::new("groupadd").arg(&group)),
    );
}

#[test]
fn a_source_replaced_by_a_folder_is_survived() {
    let (one, two) = two_versions();
    let (rsa, ec) = (fullchain_for("le"), fullchain_for("le-ec"));
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::write(&acme, &one).unwrap();
    let out = tmp.path().join("out");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::start(
        &[
            "--acme",
            acme.to_str().unwrap(),
            "--domain",
            DOMAIN,
            "--resolver",
            "le",
            "--out-dir",
            out.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ],
        &[],
    );
    wait_until(Duration::from_secs(10), "the first pair", || {
        out.join("privkey.pem").exists() && pair_in(&out) == rsa
    });

    std::fs::remove_file(&acme).unwrap();
    std::fs::create_dir(&acme).unwrap();
    wait_until(
        Duration::from_secs(10),
        "/healthz to name the folder",
        || {
            let (status, body) = http_get(&addr, "/healthz");
            status == 503 && body.contains("a folder, not a regular file")
        },
    );
    assert_eq!(pair_in(&out), rsa, "the old pair stays whole");
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon stays up"
    );

    std::fs::remove_dir(&acme).unwrap();
    std::fs::write(&acme, &two).unwrap();
    wait_until(Duration::from_secs(10), "the new pair", || {
        pair_in(&out) == ec
    });
    wait_until(Duration::from_secs(5), "/healthz healthy again", || {
        http_get(&addr, "/healthz").0 == 200
    });
}

/// As root, mode 000 stops nothing: CAP_DAC_OVERRIDE reads through it. The daemon
/// runs as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from its
/// bounding set, so exec leaves them out), as a hardened unit would: it still owns
/// and writes its out dir, and file modes bind it like anyone else.
#[test]
fn an_unreadable_source_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    survives_under(
        &[
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
            "--inh-caps",
            "-dac_override,-dac_read_search",
            "--",
        ],
        &tmp.path().join("out"),
        &[],
        |at| chmod(at.acme, 0o000),
        "Permission denied",
        |at| chmod(at.acme, 0o600),
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The daemon's fd limit lowered to what it holds already (`prlimit` on its pid):
/// nothing new can be opened, the source included, then raised again. Only the soft
/// limit moves: raising a hard limit back needs CAP_SYS_RESOURCE, which a container
/// may lack. With no fd
/// free, /healthz cannot be answered either (the connection waits in the backlog
/// until fds come back), so the fault is looked for in the log, which is open.
#[test]
fn the_fd_limit_reached_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    survives_under(
        &[],
        &tmp.path().join("out"),
        &[],
        |at| {
            // A new fd takes the lowest free number, and must be below the limit:
            // the lowest free number as the limit leaves none.
            let held: std::collections::BTreeSet<u32> =
                std::fs::read_dir(format!("/proc/{}/fd", at.pid))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
                    .collect();
            let held = (0..).find(|n| !held.contains(n)).unwrap();
            run(Command::new("prlimit")
                .arg(format!("--pid={}", at.pid))
                .arg(format!("--nofile={held}:")));
        },
        // With no fd free, /healthz still answers: the listener keeps one in reserve.
        "Too many open files",
        |at| {
            run(Command::new("prlimit")
                .arg(format!("--pid={}", at.pid))
                .arg("--nofile=1024:"))
        },
    );
}

/// Waits for /healthz at `addr` to answer 503 naming `says`. A source that cannot
/// be read for lack of fds is "not ready" (retried quietly) for its first 10 s, then
/// named: 20 s.
#[track_caller]
fn healthz_names(addr: &str, says: &str, daemon: &Daemon) {
    let mut last = String::new();
    let named = poll(Duration::from_secs(20), || {
        let (status, body) = http_get(addr, "/healthz");
        let named = status == 503 && body.contains(says);
        last = body;
        named
    });
    assert!(
        named,
        "/healthz does not name the fault ({says:?}); it says:\n{last}\nlog:\n{}",
        daemon.log()
    );
}

/// Calls `f` until it is true (then true) or `timeout` passes (then false).
fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A daemon keeping `le`'s certificate in `out` (written there already, and served by
/// a peer the caller started) with the reload flags `reload`; then `fault` and a
/// renewal: the new pair is written whole, the reload fails, /healthz names `says`
/// and the daemon stays up. `clear` ends the fault; the owed reload is retried by
/// itself until it succeeds, and `serves` (when given) serves the new certificate.
fn reload_survives(
    out: &Path,
    reload: &[&str],
    env: &[(String, String)],
    fault: impl FnOnce(),
    says: &str,
    clear: impl FnOnce(),
    serves: Option<&str>,
) {
    let (one, two) = two_versions();
    let (rsa, ec) = (fullchain_for("le"), fullchain_for("le-ec"));
    assert_eq!(pair_in(out), rsa, "the caller writes le's pair first");
    let tmp = tempfile::tempdir().unwrap();
    let acme = tmp.path().join("acme.json");
    std::fs::write(&acme, &one).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = daemon_args(&acme, out, &addr);
    args.extend_from_slice(reload);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut daemon = Daemon::start(&args, &env);
    let healthy = |daemon: &Daemon, what: &str, timeout: Duration| {
        let mut last = String::new();
        let ok = poll(timeout, || {
            let (status, body) = http_get(&addr, "/healthz");
            last = body;
            status == 200
        });
        assert!(ok, "{what}: /healthz says:\n{last}\nlog:\n{}", daemon.log());
    };
    assert!(wait_port(port, Duration::from_secs(10)), "{}", daemon.log());
    healthy(&daemon, "before the fault", Duration::from_secs(10));

    fault();
    rewrite_in_place(&acme, &two);
    healthz_names(&addr, says, &daemon);
    assert_eq!(pair_in(out), ec, "the new pair is written whole");
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "the daemon stays up"
    );

    clear();
    // The retries back off from 1 s, doubling: the fault lasted a few seconds.
    healthy(&daemon, "once the fault is gone", Duration::from_secs(40));
    assert_eq!(pair_in(out), ec);
    if let Some(serves) = serves {
        assert_eq!(
            served_serial(serves, DOMAIN),
            Some(file_serial(&out.join("fullchain.pem"))),
            "the peer serves the new certificate"
        );
    }
}

/// The Docker Engine API reached through a TCP proxy (as a docker-socket-proxy
/// would be): the proxy is stopped while a reload is due, then started again on
/// the same port. The machine's dockerd is never touched.
#[test]
fn the_docker_api_gone_while_a_reload_is_due_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    once_from("le", &out, &[], &[]).expect_code(0);
    let name = unique("fault-api");
    let coturn = CoturnContainer::start(&name, &[], &out, free_port());
    let tls = coturn.tls_addr();
    let proxy = std::cell::RefCell::new(SocketProxy::start());
    let host = proxy.borrow().docker_host();
    reload_survives(
        &out,
        &["--docker-container", &name, "--verify-tls", &tls],
        &[("DOCKER_HOST".into(), host.clone())],
        || proxy.borrow_mut().stop(),
        &format!("cannot reach the Docker Engine API at {host}"),
        || proxy.borrow_mut().restart(),
        Some(&tls),
    );
}

/// The coturn unit stopped and its unit file removed from the user manager (then
/// daemon-reload): the unit no longer exists. Put back and started, the owed reload
/// goes through.
#[test]
fn the_systemd_unit_removed_is_survived() {
    let m = UserManager::start();
    let certs = m.dir().join("certs");
    once_from("le", &certs, &[], &m.env()).expect_code(0);
    let unit = "coturn-fault.service";
    let conf = CoturnConfig::write(m.dir(), &certs);
    let contents = format!(
        "[Unit]\nDescription=coturn for certsync tests\n\n[Service]\nType=simple\n\
         ExecStart={} -c {}\n",
        turnserver_bin().display(),
        conf.file.display()
    );
    let file = m.install_unit(unit, &contents);
    m.start_unit(unit);
    let tls = conf.tls_addr();
    assert!(wait_port(conf.tls_port, Duration::from_secs(10)));
    reload_survives(
        &certs,
        &[
            "--systemd-unit",
            unit,
            "--systemd-bus",
            "user",
            "--verify-tls",
            &tls,
        ],
        &m.env(),
        || {
            m.stop_unit(unit);
            std::fs::remove_file(&file).unwrap();
            m.daemon_reload();
        },
        "unit coturn-fault.service does not exist on the user manager",
        || {
            m.install_unit(unit, &contents);
            m.start_unit(unit);
        },
        Some(&tls),
    );
}

/// coturn reads its certificate from another folder than the one certsync writes
/// (a stale copy): each reload (SIGUSR2) leaves it serving the old certificate, so
/// --verify-tls fails and the reload is retried; once coturn's folder gets the right
/// files, the next retry's signal makes it serve them.
#[test]
fn coturn_serving_the_wrong_certificate_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let stale = tmp.path().join("stale");
    once_from("le", &out, &[], &[]).expect_code(0);
    once_from("le", &stale, &[], &[]).expect_code(0);
    let coturn = Coturn::start(tmp.path(), &stale);
    let tls = coturn.tls_addr();
    wait_served(
        &tls,
        DOMAIN,
        &file_serial(&stale.join("fullchain.pem")),
        Duration::from_secs(10),
    );
    let kill = format!("kill -USR2 {}", coturn.pid());
    reload_survives(
        &out,
        &[
            "--reload-command",
            &kill,
            "--verify-tls",
            &tls,
            "--verify-timeout",
            "1s",
        ],
        &[],
        || {},
        &format!("{tls} does not serve the certificate just written"),
        || {
            for name in ["fullchain.pem", "privkey.pem"] {
                std::fs::copy(out.join(name), stale.join(name)).unwrap();
            }
        },
        Some(&tls),
    );
}

/// The daemon's flags for le's `DOMAIN` from `acme` into `out`, with /metrics at `addr`.
fn daemon_args<'a>(acme: &'a Path, out: &'a Path, addr: &'a str) -> Vec<&'a str> {
    vec![
        "--acme",
        acme.to_str().unwrap(),
        "--domain",
        DOMAIN,
        "--resolver",
        "le",
        "--out-dir",
        out.to_str().unwrap(),
        "--metrics-listen",
        addr,
    ]
}
