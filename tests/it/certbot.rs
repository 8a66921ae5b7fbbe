//! certsync as a real certbot's deploy hook: certbot (Debian's) gets a certificate from
//! Pebble and runs `certsync --once`, which finds the lineage in RENEWED_LINEAGE.

use std::path::Path;
use std::process::Command;

use crate::support::{file_serial, free_port, run_ok, Pebble};

fn certbot(pebble: &Pebble, dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("certbot")
            .args(args)
            .args([
                "--non-interactive",
                "--agree-tos",
                "-m",
                "ops@example.test",
                "--server",
                &pebble.dir_url,
            ])
            .arg("--config-dir")
            .arg(dir.join("conf"))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--logs-dir")
            .arg(dir.join("logs"))
            .env("REQUESTS_CA_BUNDLE", &pebble.ca_file),
    );
}

#[test]
fn certbot_deploy_hook_issues_and_renews_into_the_out_dir() {
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), 3600);
    let out = work.path().join("coturn-certs");
    let hook = format!(
        "{} --once --out-dir {} --key-mode 0640 --textfile {}",
        env!("CARGO_BIN_EXE_certsync"),
        out.display(),
        work.path().join("certsync.prom").display()
    );
    let port = free_port().to_string();
    let standalone = [
        "--standalone",
        "--http-01-port",
        port.as_str(),
        "--http-01-address",
        "127.0.0.1",
    ];
    let mut args = vec![
        "certonly",
        "-d",
        "turn.example.test",
        "--deploy-hook",
        &hook,
    ];
    args.extend(standalone);
    certbot(&pebble, work.path(), &args);

    let live = work.path().join("conf/live/turn.example.test");
    let first = file_serial(&live.join("fullchain.pem"));
    assert_eq!(
        std::fs::read(out.join("fullchain.pem")).unwrap(),
        std::fs::read(live.join("fullchain.pem")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("privkey.pem")).unwrap(),
        std::fs::read(live.join("privkey.pem")).unwrap()
    );
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&out.join("privkey.pem")), 0o640, "--key-mode");
    assert_eq!(
        mode(&out.join("fullchain.pem")),
        0o644,
        "the default cert mode"
    );
    assert_eq!(mode(&out), 0o755, "an out dir certsync creates is 0755");
    assert!(!std::fs::symlink_metadata(out.join("privkey.pem"))
        .unwrap()
        .file_type()
        .is_symlink());

    // `certbot renew` runs the hook saved in the renewal config again.
    // Without a TTY, `certbot renew` first sleeps up to 8 minutes to spread load.
    let mut args = vec!["renew", "--force-renewal", "--no-random-sleep-on-renew"];
    args.extend(standalone);
    certbot(&pebble, work.path(), &args);
    let renewed = file_serial(&out.join("fullchain.pem"));
    assert_ne!(renewed, first, "the hook wrote the renewed certificate");
    assert_eq!(renewed, file_serial(&live.join("fullchain.pem")));
    let metrics = std::fs::read_to_string(work.path().join("certsync.prom")).unwrap();
    assert!(
        metrics.contains(&format!("serial=\"{renewed}\"")),
        "{metrics}"
    );
}
