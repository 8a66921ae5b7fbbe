//! Reload by a command: `sh -c CMD` with the target's domain and absolute file paths.

use std::fs;

use crate::support::bin::{command, fixture, once_from, DOMAIN, PENDING};

#[test]
fn the_command_sees_the_domain_and_absolute_paths_and_its_output_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("seen.env");
    let cmd = format!(
        "env | grep ^CERTSYNC_ | sort > {}; echo hello from the hook; echo to stderr >&2",
        seen.display()
    );
    // A relative --out-dir: the command still gets absolute paths.
    let out = command()
        .current_dir(tmp.path())
        .args(["--once", "--acme"])
        .arg(fixture("acme.json"))
        .args([
            "--domain",
            DOMAIN,
            "--resolver",
            "le",
            "--out-dir",
            "rel/out",
        ])
        .args(["--reload-command", &cmd])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("reload command: hello from the hook"),
        "{stderr}"
    );
    assert!(stderr.contains("reload command: to stderr"), "{stderr}");
    let dir = fs::canonicalize(tmp.path()).unwrap().join("rel/out");
    let want = format!(
        "CERTSYNC_CERT_FILE={}\nCERTSYNC_DIR={}\nCERTSYNC_DOMAIN={DOMAIN}\nCERTSYNC_KEY_FILE={}\n",
        dir.join("fullchain.pem").display(),
        dir.display(),
        dir.join("privkey.pem").display()
    );
    let got = fs::read_to_string(&seen).unwrap();
    // tempdir may sit behind a symlink: compare with either spelling of the folder.
    let plain = want.replace(
        &dir.display().to_string(),
        &tmp.path().join("rel/out").display().to_string(),
    );
    assert!(got == want || got == plain, "{got}");
}

#[test]
fn a_failing_command_is_a_failed_reload_retried_until_it_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    once_from(
        "le",
        out,
        &[
            "--reload-command",
            "echo first >&2; echo 'coturn said no' >&2; exit 7",
        ],
        &[],
    )
    .expect_code(1)
    .expect_says(&[
        "failed with exit code 7",
        "stderr: first | coturn said no",
        "the files stay written",
    ]);
    assert!(out.join("fullchain.pem").exists() && out.join(PENDING).exists());

    // Same files: the owed reload runs again.
    let ran = out.join("ran");
    let ok = format!("touch {}", ran.display());
    once_from("le", out, &["--reload-command", &ok], &[])
        .expect_code(0)
        .expect_says(&["unchanged", "ran \"touch"]);
    assert!(ran.exists() && !out.join(PENDING).exists());

    // Nothing owed, nothing changed: no reload.
    fs::remove_file(&ran).unwrap();
    once_from("le", out, &["--reload-command", &ok], &[]).expect_code(0);
    assert!(!ran.exists(), "unchanged files were reloaded");
}

#[test]
fn a_command_killed_by_a_signal_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    once_from(
        "le",
        tmp.path(),
        &["--reload-command", "kill -TERM $$"],
        &[],
    )
    .expect_code(1)
    .expect_says(&["killed by signal SIGTERM"]);
}

/// Issue 9: SIGTERM during a reload command. The daemon exits within 2 s and the
/// command's whole process group (here the shell and a background child) is gone.
#[test]
fn sigterm_during_a_reload_command_kills_its_process_group_and_exits_at_once() {
    use std::time::{Duration, Instant};

    use crate::support::bin::{wait_until, Daemon};

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pgid_file = tmp.path().join("pgid");
    let cmd = format!(
        "echo $$ > {p}.tmp; mv {p}.tmp {p}; sleep 20 & sleep 20",
        p = pgid_file.display()
    );
    let acme = fixture("acme.json");
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
            "--reload-command",
            &cmd,
            "--metrics-listen",
            "off",
        ],
        &[],
    );
    wait_until(Duration::from_secs(10), "the reload command", || {
        pgid_file.exists()
    });
    let pgid: i32 = fs::read_to_string(&pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until(Duration::from_secs(5), "both sleeps", || {
        group_members(pgid).len() >= 2
    });
    let t = Instant::now();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("still running 2 s after SIGTERM:\n{}", daemon.log()));
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    eprintln!("exit {} ms after SIGTERM", t.elapsed().as_millis());
    // Orphans are reaped by whoever adopts them: allow that a moment.
    let end = Instant::now() + Duration::from_secs(1);
    while !group_members(pgid).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(group_members(pgid), Vec::<String>::new());
}

/// Live (not zombie) processes of process group PGID, as "PID (COMM)".
fn group_members(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // After "PID (COMM)": state, ppid, pgrp.
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if rest.get(2) == Some(&pgid.to_string().as_str()) && rest[0] != "Z" {
            found.push(stat[..=close].to_owned());
        }
    }
    found
}
