//! The Debian package, as an operator gets it: built with cargo-deb, installed with
//! `dpkg -i` on this machine (CI runs as root on a throwaway machine; installing again
//! is a reinstall, so the test is idempotent), its units checked by `systemd-analyze`,
//! and the INSTALLED certsync.service run in a real systemd user manager next to a real
//! coturn unit while a real Traefik renews its certificate from Pebble.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::CommandFactory;

use crate::support::bin::DOMAIN;
use crate::support::bin::{free_port, http_get};
use crate::support::systemd::UserManager;
use crate::support::{file_serial, pem_serial, served_serial, wait_port, CoturnConfig};
use crate::support::{log_tail, read_certificate, repo_root, Pebble, Resolver, Traefik};

/// Where dpkg puts the units (cargo-deb's default, as on a merged-/usr Debian).
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const UNITS: [&str; 3] = [
    "certsync.service",
    "certsync-once.service",
    "certsync.timer",
];
const CONFIG: &str = "/etc/certsync/certsync.toml";
const POLKIT_RULE: &str = "/usr/share/polkit-1/rules.d/50-certsync.rules";
const MAN_DIR: &str = "docs/man";

// ---------------------------------------------------------------------------------
// The man pages

/// Every man page the CLI defines: certsync(8), then one per subcommand
/// (certsync-list(8), ...), each rendered by clap_mangen from the same `Cli` that
/// parses the command line, so an option cannot be missing from them.
fn man_pages() -> BTreeMap<String, Vec<u8>> {
    let mut cli = certsync::cli::Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pages = BTreeMap::new();
    let mut main = Vec::new();
    let page = clap_mangen::Man::new(cli.clone())
        .section("8")
        .manual("System Administration");
    page.render(&mut main).unwrap();
    main.extend_from_slice(MAN_EPILOGUE.as_bytes());
    pages.insert(page.get_filename(), main);
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = clap_mangen::Man::new(sub.clone())
            .section("8")
            .manual("System Administration");
        let mut text = Vec::new();
        page.render(&mut text).unwrap();
        pages.insert(page.get_filename(), text);
    }
    pages
}

/// What the packaged certsync(8) says beyond the options: where its files are.
const MAN_EPILOGUE: &str = r#".SH FILES
.TP
\fI/etc/certsync/certsync.toml\fR
The targets of \fBcertsync.service\fR and \fBcertsync\-once.service\fR (\fB\-\-config\fR).
.TP
\fI/usr/lib/systemd/system/certsync.service\fR
The daemon, as the user \fBcertsync\fR with CAP_CHOWN and CAP_DAC_READ_SEARCH.
Add writable out dirs with \fBsystemctl edit certsync\fR (\fBReadWritePaths=\fR).
.TP
\fI/usr/lib/systemd/system/certsync.timer\fR
One pass (\fBcertsync\-once.service\fR) every 12 hours, instead of the daemon.
.TP
\fI/usr/share/polkit\-1/rules.d/50\-certsync.rules\fR
Lets the user \fBcertsync\fR signal and restart \fBcoturn.service\fR, nothing else.
.SH EXIT STATUS
0: every target is in sync; 1: at least one target failed; 2: usage or configuration error.
.SH SEE ALSO
\fBcertsync\-list\fR(8), \fBsystemd.exec\fR(5), \fBturnserver\fR(1),
\fI/usr/share/doc/certsync/README.md\fR
"#;

/// docs/man/ is what the package ships; it must be what the CLI renders today.
/// `CERTSYNC_UPDATE_MAN=1 cargo test --test it deb::the_man_pages` rewrites it.
#[test]
fn the_man_pages_are_the_ones_the_cli_renders() {
    let dir = repo_root().join(MAN_DIR);
    let pages = man_pages();
    if std::env::var_os("CERTSYNC_UPDATE_MAN").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for (name, text) in &pages {
            fs::write(dir.join(name), text).unwrap();
        }
    }
    let on_disk: BTreeMap<String, Vec<u8>> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&on_disk),
        names(&pages),
        "{MAN_DIR}/ is stale: run CERTSYNC_UPDATE_MAN=1 cargo test --test it deb::the_man_pages"
    );
    for (name, text) in &pages {
        assert!(
            on_disk[name] == *text,
            "{MAN_DIR}/{name} is stale: run CERTSYNC_UPDATE_MAN=1 cargo test --test it deb::the_man_pages"
        );
    }
    // Every long option of the CLI is in a page (clap_mangen escapes `-` as `\-`).
    let all = pages
        .values()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<String>();
    let cli = certsync::cli::Cli::command();
    for arg in cli.get_arguments() {
        if let Some(long) = arg.get_long() {
            let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(all.contains(&roff), "--{long} is in no man page");
        }
    }
}

// ---------------------------------------------------------------------------------
// Building and installing the package, once per test binary

struct Installed {
    deb: PathBuf,
}

/// Builds the .deb with cargo-deb and installs it with dpkg; both tests below need it,
/// and they run in parallel threads, so it happens once.
fn installed() -> &'static Installed {
    static ONCE: OnceLock<Installed> = OnceLock::new();
    ONCE.get_or_init(|| {
        let deb = build_deb();
        dpkg_install(&deb);
        Installed { deb }
    })
}

/// The package of the `dev` build that `cargo test` has just made, unless
/// CERTSYNC_DEB_PROFILE names another profile (`release`, what operators install):
/// the packaging is the same, and a release build with LTO would add minutes.
fn build_deb() -> PathBuf {
    let out = repo_root().join("target/debian/certsync-test.deb");
    let profile = std::env::var("CERTSYNC_DEB_PROFILE").unwrap_or_else(|_| "dev".into());
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = Command::new(&cargo)
        .args([
            "deb",
            "--locked",
            "--fast",
            "--profile",
            &profile,
            "--output",
        ])
        .arg(&out)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run cargo deb");
    assert!(
        run.status.success(),
        "cargo deb failed ({}); is cargo-deb installed (tests/peers/install.sh)?\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "[timing] cargo deb: {} ms, {} bytes",
        started.elapsed().as_millis(),
        fs::metadata(&out).unwrap().len()
    );
    out
}

/// `dpkg -i`, waiting out a dpkg lock held by another installer on this machine.
fn dpkg_install(deb: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(Command::new("dpkg").arg("-i").arg(deb));
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if err.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        panic!(
            "dpkg -i {} failed ({}):\n{}{err}",
            deb.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `[Service]` lines from `User=` on: what the daemon and the timer's service
/// must share.
fn sandbox(unit: &str) -> Vec<String> {
    unit.lines()
        .skip_while(|l| !l.starts_with("User="))
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// What dpkg installed is complete, the units pass `systemd-analyze verify`, and the
/// services are hardened: exposure at most 2.0 ("OK"; 1.8 when this was written).
#[test]
fn the_package_installs_a_user_units_a_polkit_rule_and_a_man_page() {
    let pkg = installed();

    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&pkg.deb));
    for path in [
        "./usr/bin/certsync",
        "./etc/certsync/certsync.toml",
        "./usr/share/polkit-1/rules.d/50-certsync.rules",
        "./usr/share/man/man8/certsync.8.gz",
        "./usr/share/man/man8/certsync-list.8.gz",
        "./usr/lib/systemd/system/certsync.service",
        "./usr/lib/systemd/system/certsync-once.service",
        "./usr/lib/systemd/system/certsync.timer",
        "./usr/lib/sysusers.d/certsync.conf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }
    let listed =
        run_ok(Command::new("dpkg-query").args(["--showformat=${Conffiles}\n", "-W", "certsync"]));
    assert!(listed.contains(CONFIG), "{CONFIG} is no conffile: {listed}");

    // The system user, no login, no home.
    let passwd = run_ok(Command::new("getent").args(["passwd", "certsync"]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "not a system user: {passwd}"
    );
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");

    let version = run_ok(Command::new("/usr/bin/certsync").arg("--version"));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "installed: {version}"
    );
    assert!(fs::read_to_string(POLKIT_RULE)
        .unwrap()
        .contains("\"coturn.service\""));

    // A real polkitd, with only the installed rule, decides as systemd would ask it.
    let checks = [
        ("certsync", "coturn.service", "kill", "yes"),
        ("certsync", "coturn.service", "restart", "yes"),
        ("certsync", "coturn.service", "stop", "no"),
        ("certsync", "coturn.service", "start", "no"),
        ("certsync", "haproxy.service", "kill", "no"),
        ("certsync", "haproxy.service", "restart", "no"),
        ("nobody", "coturn.service", "kill", "no"),
    ];
    let script = repo_root().join("tests/peers/polkit-check.sh");
    let asked: Vec<String> = checks
        .iter()
        .map(|(user, unit, verb, _)| format!("{user}:{unit}:{verb}"))
        .collect();
    let answers = run_ok(Command::new(&script).arg(POLKIT_RULE).args(&asked));
    let expected: String = checks
        .iter()
        .map(|(user, unit, verb, yes)| format!("{user} {unit} {verb} {yes}\n"))
        .collect();
    assert_eq!(answers, expected, "polkit's decisions");

    // verify loads them as the system manager would; any complaint is printed.
    let paths: Vec<String> = UNITS.iter().map(|u| format!("{UNIT_DIR}/{u}")).collect();
    let verify = run(Command::new("systemd-analyze").arg("verify").args(&paths));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        verify.status
    );

    for service in ["certsync.service", "certsync-once.service"] {
        let path = format!("{UNIT_DIR}/{service}");
        let out = run_ok(
            Command::new("systemd-analyze")
                .args(["security", "--offline=yes", "--no-pager"])
                .arg(&path),
        );
        let overall = out
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{out}"));
        let score: f64 = overall
            .split(": ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{overall}"));
        eprintln!("[security] {service}: {}", overall.trim());
        assert!(
            score <= 2.0,
            "{service} is less hardened than it was:\n{out}"
        );
    }
    let daemon = fs::read_to_string(format!("{UNIT_DIR}/certsync.service")).unwrap();
    let once = fs::read_to_string(format!("{UNIT_DIR}/certsync-once.service")).unwrap();
    assert_eq!(
        sandbox(&daemon),
        sandbox(&once),
        "certsync.service and certsync-once.service must run with the same sandbox"
    );
}

// ---------------------------------------------------------------------------------
// The installed unit, in a user manager

/// Replaces `from` by `to` in `text`, failing if the shipped file no longer says it.
#[track_caller]
fn adjust(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{CONFIG} no longer contains {from:?}");
    text.replace(from, to)
}

/// /usr/bin/certsync under the installed certsync.service and its installed config,
/// only paths and ports adjusted: READY after the first pass, then a renewal that
/// Traefik writes is followed and coturn (a unit of the same manager) is signalled
/// and serves it, with its MainPID unchanged.
#[test]
fn the_installed_unit_follows_a_traefik_renewal_and_signals_coturn() {
    installed();
    // Not in /tmp: the unit's PrivateTmp=yes would hide the files and the bus there,
    // and not under /home or /root (ProtectHome=yes).
    let work = tempfile::Builder::new()
        .prefix("certsync-deb-it-")
        .tempdir_in("/var/lib")
        .unwrap();
    let work = work.path();
    let m = UserManager::start_in(work);

    let pebble = Pebble::start(work, 1200);
    let resolver = Resolver::new("le", "EC256", &[&[DOMAIN]]).certificates_duration_hours(1);
    let mut traefik = Traefik::start(work, &pebble, &[resolver]);
    let first = traefik.wait_for("le", DOMAIN, Duration::from_secs(60));

    // coturn, as Debian's coturn.service: cert and key in the out dir.
    let certs = work.join("certs");
    fs::create_dir_all(&certs).unwrap();
    let coturn_dir = work.join("coturn");
    fs::create_dir_all(&coturn_dir).unwrap();
    let coturn_config = CoturnConfig::write(&coturn_dir, &certs);
    let (coturn_conf, tls_port) = (coturn_config.file.clone(), coturn_config.tls_port);
    m.install_unit(
        "coturn.service",
        &format!(
            "[Unit]\nDescription=coturn for certsync's package test\n\n[Service]\n\
             Type=simple\nExecStart=/usr/bin/turnserver -c {}\n",
            coturn_conf.display()
        ),
    );

    // The shipped config, pointed at this test's Traefik, coturn and ports.
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut config = fs::read_to_string(CONFIG).unwrap();
    config = adjust(
        config,
        "\"/var/lib/traefik/acme.json\"",
        &format!("{:?}", traefik.acme_json.display().to_string()),
    );
    config = adjust(
        config,
        "out_dir = \"/etc/coturn/certs\"",
        &format!("out_dir = {:?}", certs.display().to_string()),
    );
    config = adjust(config, "turn.example.com", DOMAIN);
    config = adjust(config, "127.0.0.1:9731", &metrics);
    config = adjust(config, "127.0.0.1:5349", &format!("127.0.0.1:{tls_port}"));
    config = adjust(config, "bus = \"system\"", "bus = \"user\"");
    // The shipped owner is the service's own user with coturn's group; in the rig
    // the service runs as root, so root keeps the files and turnserver gets the group.
    config = adjust(config, "certsync:turnserver", "root:turnserver");
    let test_config = work.join("certsync.toml");
    let log = work.join("certsync.log");
    fs::write(&test_config, config).unwrap();

    // The installed units, copied as they are; the test's changes are a drop-in.
    let dropin = format!(
        "# A user manager cannot switch to another user or hand out ambient\n\
         # capabilities: here the service runs as root, within the same bounding set.\n\
         [Service]\n\
         User=\n\
         Group=\n\
         AmbientCapabilities=\n\
         # The test's config at the path the unit reads, and its out dir writable.\n\
         BindReadOnlyPaths={config}:{CONFIG}\n\
         ReadWritePaths=\n\
         ReadWritePaths={certs}\n\
         Environment=DBUS_SESSION_BUS_ADDRESS={bus}\n\
         # No journald in the rig.\n\
         StandardError=append:{log}\n",
        config = test_config.display(),
        certs = certs.display(),
        bus = m.bus_address(),
        log = log.display(),
    );
    for unit in ["certsync.service", "certsync-once.service"] {
        fs::copy(format!("{UNIT_DIR}/{unit}"), m.unit_dir().join(unit)).unwrap();
        let dir = m.unit_dir().join(format!("{unit}.d"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("test.conf"), &dropin).unwrap();
    }
    m.daemon_reload();

    // Type=notify: `systemctl start` returns once READY=1 came, after the first pass.
    let started = Instant::now();
    let start = m
        .command("systemctl")
        .args(["--user", "start", "certsync.service"])
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "systemctl --user start certsync.service: {}\n{}\n{}",
        String::from_utf8_lossy(&start.stderr),
        log_tail(&log, 30),
        log_tail(&m.dir().join("systemd.log"), 30)
    );
    eprintln!(
        "[timing] certsync.service READY {} ms after start",
        started.elapsed().as_millis()
    );
    assert_eq!(m.active_state("certsync.service"), "active");
    let pid = m.main_pid("certsync.service");
    let fullchain = certs.join("fullchain.pem");
    assert!(
        fullchain.is_file() && certs.join("privkey.pem").is_file(),
        "READY before the files were written"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} not in /proc/{pid}/status"))
            .to_string()
    };
    // CAP_CHOWN (0) and CAP_DAC_READ_SEARCH (2), nothing else; seccomp filter on.
    assert_eq!(field("CapBnd:"), "0000000000000005");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let key_meta = fs::metadata(certs.join("privkey.pem")).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let turnserver_gid = run_ok(Command::new("getent").args(["group", "turnserver"]));
        let gid: u32 = turnserver_gid.split(':').nth(2).unwrap().parse().unwrap();
        assert_eq!((key_meta.uid(), key_meta.gid()), (0, gid));
        assert_eq!(key_meta.mode() & 0o7777, 0o640);
    }

    // coturn after certsync, as `Before=coturn.service` orders it at boot.
    m.start_unit("coturn.service");
    assert!(
        wait_port(tls_port, Duration::from_secs(20)),
        "coturn TLS port\n{}",
        log_tail(&coturn_config.log, 20)
    );
    let old = file_serial(&fullchain);
    assert_eq!(
        served_serial(&format!("127.0.0.1:{tls_port}"), DOMAIN).as_deref(),
        Some(old.as_str())
    );
    let coturn_pid = m.main_pid("coturn.service");

    // A renewal: Traefik checks at start-up, and every certificate is due.
    traefik.restart();
    traefik.wait_for_change("le", DOMAIN, &first, Duration::from_secs(90));
    let renewed = read_certificate(&traefik.acme_json, "le", DOMAIN).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let mut served = None;
    while Instant::now() < end {
        served = served_serial(&format!("127.0.0.1:{tls_port}"), DOMAIN);
        if served.as_deref() != Some(old.as_str()) && served.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let new = file_serial(&fullchain);
    assert_ne!(new, old, "certsync.service did not follow the renewal");
    assert_eq!(pem_serial(&crate::support::b64_decode(&renewed)), new);
    assert_eq!(served.as_deref(), Some(new.as_str()), "coturn serves");
    assert_eq!(
        m.main_pid("coturn.service"),
        coturn_pid,
        "coturn was restarted, not signalled"
    );
    assert!(fs::read_to_string(&coturn_config.log)
        .unwrap()
        .contains("Reloading TLS certificates and keys"));
    assert_eq!(m.main_pid("certsync.service"), pid);

    let (code, text) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("certsync_reload_total{target=\"coturn\",method=\"systemd\",result=\"ok\"}"),
        "{text}"
    );
    m.stop_unit("certsync.service");

    // The timer's service: one pass in the same sandbox, exit 0, the files in step
    // with acme.json as Traefik left it (stopped, so that it renews no more).
    traefik.stop();
    let last = read_certificate(&traefik.acme_json, "le", DOMAIN).unwrap();
    let once = m
        .command("systemctl")
        .args(["--user", "start", "certsync-once.service"])
        .output()
        .unwrap();
    assert!(
        once.status.success(),
        "systemctl --user start certsync-once.service: {}\n{}",
        String::from_utf8_lossy(&once.stderr),
        log_tail(&log, 30)
    );
    assert_eq!(
        m.unit_property(
            "certsync-once.service",
            "org.freedesktop.systemd1.Service",
            "Result"
        ),
        "s \"success\""
    );
    assert_eq!(
        file_serial(&fullchain),
        pem_serial(&crate::support::b64_decode(&last))
    );
}
