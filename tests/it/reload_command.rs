//! Reload by a command: `sh -c CMD` with the target's domain and absolute file paths.

use std::fs;

use crate::reload_peers::*;
use crate::support::bin::{command, fixture};

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
        "CERTSYNC_CERT_FILE={}\nCERTSYNC_DOMAIN={DOMAIN}\nCERTSYNC_KEY_FILE={}\n",
        dir.join("fullchain.pem").display(),
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
    once(
        out,
        "le",
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
    once(out, "le", &["--reload-command", &ok], &[])
        .expect_code(0)
        .expect_says(&["unchanged", "ran \"touch"]);
    assert!(ran.exists() && !out.join(PENDING).exists());

    // Nothing owed, nothing changed: no reload.
    fs::remove_file(&ran).unwrap();
    once(out, "le", &["--reload-command", &ok], &[]).expect_code(0);
    assert!(!ran.exists(), "unchanged files were reloaded");
}

#[test]
fn a_command_killed_by_a_signal_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    once(
        tmp.path(),
        "le",
        &["--reload-command", "kill -TERM $$"],
        &[],
    )
    .expect_code(1)
    .expect_says(&["killed by signal SIGTERM"]);
}
