//! Reload by signal where there is no systemd or Docker API to ask (a pod with a shared
//! PID namespace): `--signal-pid-file` (coturn's own `pidfile=`) and `--signal-process
//! NAME`, against a real coturn.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bin::{once_from, report_timing, DOMAIN, PENDING};
use crate::support::bin::{wait_until, Run};
use crate::support::stun::StunTls;
use crate::support::{file_serial, served_serial, turnserver_bin, Coturn, CoturnConfig};

/// coturn serving `certs/fullchain.pem` as certsync wrote it from resolver `le`, under
/// WORK; its serial.
fn coturn_on_first_files(work: &Path, program: &Path) -> (Coturn, PathBuf, String) {
    let certs = work.join("certs");
    once_from("le", &certs, &[], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let coturn = Coturn::start_program(program, work, &certs);
    assert_eq!(served_serial(&coturn.tls_addr(), DOMAIN), Some(old.clone()));
    (coturn, certs, old)
}

/// After the run: the new serial is served by the same process, which still answers
/// on a TLS connection opened before the rotation.
fn assert_rotated_in_place(
    run: &Run,
    coturn: &mut Coturn,
    pid: u32,
    certs: &Path,
    old: &str,
    call: &mut StunTls,
) {
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_ne!(new, old);
    assert_eq!(served_serial(&coturn.tls_addr(), DOMAIN), Some(new));
    assert!(coturn.is_running(), "coturn died:\n{}", run.stderr);
    assert_eq!(coturn.pid(), pid);
    assert!(fs::read_to_string(&coturn.config.log)
        .unwrap()
        .contains("Reloading TLS certificates and keys"));
    let mapped = call
        .binding()
        .expect("the connection opened before the rotation still gets answers");
    assert_eq!(mapped, call.local_addr());
    assert!(!certs.join(PENDING).exists());
}

#[test]
fn pid_file_reload_keeps_the_process_and_its_open_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut coturn, certs, old) = coturn_on_first_files(tmp.path(), &turnserver_bin());
    let pid = coturn.pid();
    let pidfile = coturn.pidfile();
    wait_until(Duration::from_secs(5), "coturn's pid file", || {
        fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid.to_string())
    });
    let mut call = StunTls::connect(coturn.config.tls_port, DOMAIN).unwrap();
    call.binding().expect("Binding before the rotation");

    let addr = coturn.tls_addr();
    let pidfile_arg = pidfile.to_str().unwrap();
    let run = once_from(
        "le-ec",
        &certs,
        &["--signal-pid-file", pidfile_arg, "--verify-tls", &addr],
        &[],
    );
    run.expect_code(0).expect_says(&[
        "wrote",
        &format!(
            "sent SIGUSR2 to process {pid} (turnserver) of the PID file {}",
            pidfile.display()
        ),
        "serves the new certificate",
    ]);
    report_timing("signal PID file", &run);
    assert_rotated_in_place(&run, &mut coturn, pid, &certs, &old, &mut call);

    // A PID file rewritten to name init: refused, the files stay written, the reload owed.
    fs::write(&pidfile, "1\n").unwrap();
    once_from("le", &certs, &["--signal-pid-file", pidfile_arg], &[])
        .expect_code(1)
        .expect_says(&[
            "wrote",
            "names PID 1: refusing to signal init or the kernel",
            "the files stay written",
        ]);
    assert!(certs.join(PENDING).exists());
    assert!(coturn.is_running());

    // Restart mode has nothing to restart with a PID: a usage error.
    once_from(
        "le",
        &certs,
        &["--signal-pid-file", pidfile_arg, "--reload-mode", "restart"],
        &[],
    )
    .expect_code(2)
    .expect_says(&["reload mode 'restart' cannot be used with a signal PID file"]);
}

/// coturn handles SIGUSR2 only some 150 ms after it starts listening, and dies of it
/// before that: a PID file read at once is signalled only once the handler is there.
#[test]
fn a_coturn_signalled_as_soon_as_it_listens_is_not_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    once_from("le", &certs, &[], &[]).expect_code(0);
    let mut coturn = Coturn::start(tmp.path(), &certs);
    let pid = coturn.pid();
    let pidfile = coturn.pidfile();
    let run = once_from(
        "le-ec",
        &certs,
        &[
            "--signal-pid-file",
            pidfile.to_str().unwrap(),
            "--verify-tls",
            &coturn.tls_addr(),
        ],
        &[],
    );
    run.expect_code(0)
        .expect_says(&["sent SIGUSR2", "serves the new certificate"]);
    assert!(coturn.is_running(), "coturn died of an early SIGUSR2");
    assert_eq!(coturn.pid(), pid);
}

/// Every process of the name gets the signal. The test's coturns run from a copy of
/// turnserver under a name of their own: other tests (and other test runs on the
/// machine) run coturns too, and `turnserver` would reach them all.
#[test]
fn process_name_reload_reaches_every_coturn_of_that_name() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("turn-it-{}", std::process::id() % 1_000_000);
    let program = tmp.path().join(&name);
    fs::copy(turnserver_bin(), &program).unwrap();
    let (mut a, certs, old) = coturn_on_first_files(&tmp.path().join("a"), &program);
    let mut b = Coturn::start_program(&program, &tmp.path().join("b"), &certs);
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let mut call = StunTls::connect(a.config.tls_port, DOMAIN).unwrap();
    call.binding().expect("Binding before the rotation");

    let addr = a.tls_addr();
    let run = once_from(
        "le-ec",
        &certs,
        &["--signal-process", &name, "--verify-tls", &addr],
        &[],
    );
    let (low, high) = (pid_a.min(pid_b), pid_a.max(pid_b));
    run.expect_code(0).expect_says(&[
        &format!("sent SIGUSR2 to 2 processes named {name}: {low}, {high}"),
        "serves the new certificate",
    ]);
    report_timing("signal process name (2 processes)", &run);
    assert_rotated_in_place(&run, &mut a, pid_a, &certs, &old, &mut call);
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_eq!(served_serial(&b.tls_addr(), DOMAIN), Some(new));
    assert!(b.is_running());
    assert_eq!(b.pid(), pid_b);

    // None of that name running: not an error, nothing to verify.
    drop(a);
    drop(b);
    once_from(
        "le",
        &certs,
        &["--signal-process", &name, "--verify-tls", &addr],
        &[],
    )
    .expect_code(0)
    .expect_says(&[
        &format!("no process named {name} is running; it will read the new files when it starts"),
        "not verified: nothing is running",
    ]);
}

/// As in a pod with `shareProcessNamespace`: coturn and certsync alone in a PID
/// namespace of their own (and its own /proc), certsync told `--signal-process
/// turnserver` literally. No other coturn of the machine is visible there.
#[test]
fn turnserver_by_name_in_a_pid_namespace_shared_with_coturn_only() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let certs = work.join("certs");
    once_from("le", &certs, &[], &[]).expect_code(0);
    let old = file_serial(&certs.join("fullchain.pem"));
    let coturn_config = CoturnConfig::write(work, &certs);
    let (conf, tls_port) = (coturn_config.file.clone(), coturn_config.tls_port);
    let acme = crate::support::fixture("acme.json");
    let addr = format!("127.0.0.1:{tls_port}");
    let (go, rc, log) = (work.join("go"), work.join("rc"), work.join("certsync.log"));
    // The namespace's init is this shell: it starts coturn, waits for the test's go,
    // runs certsync once, then keeps the namespace (and coturn) alive until killed.
    let script = format!(
        "{turnserver} -c {conf} >/dev/null 2>&1 &\n\
         while [ ! -e {go} ]; do sleep 0.02; done\n\
         {certsync} --once --acme {acme} --domain {DOMAIN} --resolver le-ec --out-dir {certs} \
           --signal-process turnserver --verify-tls {addr} >{log} 2>&1\n\
         echo $? > {rc}\n\
         while :; do sleep 1; done\n",
        turnserver = turnserver_bin().display(),
        conf = conf.display(),
        go = go.display(),
        certsync = env!("CARGO_BIN_EXE_certsync"),
        acme = acme.display(),
        certs = certs.display(),
        log = log.display(),
        rc = rc.display(),
    );
    let pod = Namespace(
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
        crate::support::wait_port(tls_port, Duration::from_secs(10)),
        "coturn in the namespace"
    );
    assert_eq!(served_serial(&addr, DOMAIN), Some(old.clone()));
    let pidfile = coturn_config.file.with_file_name("turnserver.pid");
    wait_until(Duration::from_secs(5), "coturn's pid file", || {
        fs::read_to_string(&pidfile).is_ok_and(|t| !t.trim().is_empty())
    });
    let ns_pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let mut call = StunTls::connect(tls_port, DOMAIN).unwrap();
    let mapped = call.binding().expect("Binding before the rotation");

    fs::write(&go, "").unwrap();
    wait_until(Duration::from_secs(30), "certsync in the namespace", || {
        rc.exists()
    });
    let said = fs::read_to_string(&log).unwrap();
    eprintln!("--- certsync in the namespace:\n{said}");
    assert_eq!(fs::read_to_string(&rc).unwrap().trim(), "0", "{said}");
    assert!(
        said.contains(&format!(
            "sent SIGUSR2 to 1 process named turnserver: {ns_pid}"
        )),
        "{said}"
    );
    let run = Run {
        code: 0,
        stdout: String::new(),
        stderr: said,
    };
    report_timing("signal process name in a PID namespace", &run);
    let new = file_serial(&certs.join("fullchain.pem"));
    assert_ne!(new, old);
    assert_eq!(served_serial(&addr, DOMAIN), Some(new));
    assert_eq!(fs::read_to_string(&pidfile).unwrap().trim(), ns_pid);
    assert_eq!(
        call.binding()
            .expect("the connection opened before the rotation still gets answers"),
        mapped
    );
    drop(pod);
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
