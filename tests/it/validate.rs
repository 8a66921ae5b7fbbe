//! Bad input never reaches disk: every case exits 1, names its cause, and leaves the
//! files already in the out dir byte-identical (content, mode and inode).

use std::path::Path;

use crate::support::bin::*;

/// An out dir holding good files from the real fixture, and its state.
fn good_out_dir() -> (tempfile::TempDir, DirState) {
    let tmp = tempfile::tempdir().unwrap();
    once(&fixture("acme.json"), "turn.example.test", tmp.path(), &[]).expect_code(0);
    let state = dir_state(tmp.path());
    (tmp, state)
}

/// Runs `--once` on `acme` for `domain` over a good out dir; it must fail, say each of
/// `says`, and change nothing.
#[track_caller]
fn refused(acme: &Path, domain: &str, extra: &[&str], says: &[&str]) -> Run {
    let (out, before) = good_out_dir();
    let run = once(acme, domain, out.path(), extra);
    run.expect_code(1).expect_says(says);
    assert_eq!(
        dir_state(out.path()),
        before,
        "the files in place must not change"
    );
    run
}

/// The fixture with one change applied, written to a temporary file.
fn broken(change: impl FnOnce(&mut Acme)) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut acme = Acme::load(&fixture("acme.json"));
    change(&mut acme);
    let path = tmp.path().join("acme.json");
    acme.write(&path);
    (tmp, path)
}

#[test]
fn empty_and_truncated_acme_json_is_not_ready_and_changes_nothing() {
    let full = std::fs::read(fixture("acme.json")).unwrap();
    let cuts = [0, 1, full.len() / 3, full.len() / 2, full.len() - 2];
    // Each case waits out --once's 3 s of patience; run them side by side.
    let handles: Vec<_> = cuts
        .into_iter()
        .map(|cut| {
            let bytes = full[..cut].to_vec();
            std::thread::spawn(move || {
                let tmp = tempfile::tempdir().unwrap();
                let path = tmp.path().join("acme.json");
                std::fs::write(&path, bytes).unwrap();
                let started = std::time::Instant::now();
                let run = refused(
                    &path,
                    "turn.example.test",
                    &[],
                    &["not ready", "acme.json", "no file was changed"],
                );
                (cut, started.elapsed(), run)
            })
        })
        .collect();
    for h in handles {
        let (cut, took, run) = h.join().unwrap();
        let said = if cut == 0 { "empty" } else { "incomplete" };
        run.expect_says(&[said]);
        assert!(
            took.as_secs_f64() >= 2.5,
            "cut at {cut}: gave up after {took:?}, before the 3 s of retries"
        );
    }
}

#[test]
fn a_file_that_is_not_an_acme_json_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("acme.json");
    std::fs::write(&path, b"[1, 2, 3]").unwrap();
    refused(
        &path,
        "turn.example.test",
        &[],
        &["not a Traefik acme.json", path.to_str().unwrap()],
    );
}

#[test]
fn a_missing_acme_json_fails_after_waiting() {
    refused(
        Path::new("/nonexistent/acme.json"),
        "turn.example.test",
        &[],
        &["/nonexistent/acme.json", "does not exist"],
    );
}

#[test]
fn invalid_base64_names_the_entry() {
    let (_t, path) =
        broken(|a| a.entry("le", "turn.example.test")["certificate"] = "!!not base64!!".into());
    refused(
        &path,
        "turn.example.test",
        &["--resolver", "le"],
        &[
            "not valid base64",
            "resolver \"le\"",
            "\"turn.example.test\"",
        ],
    );
}

#[test]
fn a_key_from_another_entry_is_refused() {
    let (_t, path) =
        broken(|a| a.swap_in_key("le", "turn.example.test", ("le", "www.example.test")));
    refused(
        &path,
        "turn.example.test",
        &["--resolver", "le"],
        &["does not match", "resolver \"le\"", "turn.example.test"],
    );
}

#[test]
fn an_ec_key_for_an_rsa_leaf_is_refused() {
    let (_t, path) =
        broken(|a| a.swap_in_key("le", "turn.example.test", ("le-ec", "turn.example.test")));
    refused(
        &path,
        "turn.example.test",
        &["--resolver", "le"],
        &["does not match"],
    );
}

/// Found by fuzzing: a leaf whose public key carries the key's RSA modulus and
/// exponent under an algorithm no server knows (OID 1.2.840.179085.1.1.1) was
/// accepted. OpenSSL cannot load that public key, so coturn could not serve it.
#[test]
fn a_leaf_naming_another_key_algorithm_is_refused() {
    // rsaEncryption, 1.2.840.113549.1.1.1, as DER; its 113549 arc merged into a
    // longer one of the same encoded length, so the certificate still parses.
    let rsa = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    leaf_byte_changed_is_refused("le", &rsa, 7, 0x8a);
    // Also found by fuzzing: an EC leaf whose curve (the OBJECT IDENTIFIER after
    // id-ecPublicKey) is tagged as an IA5String...
    let ec = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06];
    leaf_byte_changed_is_refused("le-ec", &ec, 9, 0x16);
    // ...and one whose algorithm itself is.
    leaf_byte_changed_is_refused("le-ec", &ec, 0, 0x16);
}

/// `resolver`'s turn.example.test leaf with the byte at `offset` into the first run
/// of `bytes` set to `to`: it still parses, and is refused as not matching its key.
fn leaf_byte_changed_is_refused(resolver: &str, bytes: &[u8], offset: usize, to: u8) {
    let (_t, path) = broken(|a| {
        let e = a.entry(resolver, "turn.example.test");
        let mut blocks = ::pem::parse_many(b64_field(&e["certificate"])).unwrap();
        let mut der = blocks[0].contents().to_vec();
        let at = der
            .windows(bytes.len())
            .position(|w| w == bytes)
            .unwrap_or_else(|| panic!("{bytes:02x?} in {resolver}'s leaf"));
        der[at + offset] = to;
        assert!(certsync::leaf::Leaf::from_der(&der).is_ok(), "still parses");
        blocks[0] = ::pem::Pem::new("CERTIFICATE", der);
        e["certificate"] = b64_encode(::pem::encode_many(&blocks).as_bytes());
    });
    let resolver_arg = ["--resolver", resolver];
    refused(
        &path,
        "turn.example.test",
        &resolver_arg,
        &["does not match"],
    );
}

#[test]
fn a_chain_that_does_not_start_with_the_leaf_is_refused() {
    let mut first = None;
    let (_t, path) = broken(|a| {
        let e = a.entry("le", "turn.example.test");
        let mut blocks = ::pem::parse_many(b64_field(&e["certificate"])).unwrap();
        assert!(blocks.len() >= 2, "the fixture's chain has an intermediate");
        blocks.reverse();
        first = Some(
            certsync::leaf::Leaf::from_der(blocks[0].contents())
                .unwrap()
                .serial,
        );
        e["certificate"] = b64_encode(::pem::encode_many(&blocks).as_bytes());
    });
    // The message names the CA certificate that came first, by its serial.
    let intermediate = first.unwrap();
    refused(
        &path,
        "turn.example.test",
        &["--resolver", "le"],
        &[
            &format!("the first certificate (serial {intermediate}) is a CA certificate"),
            "the chain must start with the leaf",
        ],
    );
}

#[test]
fn an_expired_certificate_is_refused_with_its_not_after() {
    let mut params =
        rcgen::CertificateParams::new(vec!["expired.example.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (_t, path) = broken(|a| {
        let list = a.0["le"]["Certificates"].as_array_mut().unwrap();
        list.push(serde_json::json!({
            "domain": {"main": "expired.example.test"},
            "certificate": b64_encode(cert.pem().as_bytes()),
            "key": b64_encode(key.serialize_pem().as_bytes()),
            "Store": "default",
        }));
    });
    refused(
        &path,
        "expired.example.test",
        &[],
        &["expired", "2021-03-04T00:00:00Z", "expired.example.test"],
    );
}

#[test]
fn an_uncovered_domain_and_a_two_label_wildcard_are_refused() {
    let acme = fixture("acme.json");
    refused(
        &acme,
        "nope.other.test",
        &[],
        &["no certificate", "\"nope.other.test\"", "turn.example.test"],
    );
    refused(
        &acme,
        "a.b.example.test",
        &[],
        &["no certificate", "\"a.b.example.test\""],
    );
    // The wildcard never covers the bare parent name.
    refused(
        &acme,
        "example.test",
        &["--resolver", "le-ec"],
        &["of resolver \"le-ec\"", "\"example.test\""],
    );
}

#[test]
fn an_unknown_user_is_refused() {
    refused(
        &fixture("acme.json"),
        "turn.example.test",
        &["--owner", "no-such-user-here"],
        &["unknown user", "no-such-user-here"],
    );
}

#[test]
fn private_keys_never_reach_the_output() {
    // Of both keys the runs below read (turn's, and www's in the mismatched file): the
    // body lines of the PEM, and a slice of the base64 field.
    let mut acme = Acme::load(&fixture("acme.json"));
    let mut secrets: Vec<String> = Vec::new();
    for main in ["turn.example.test", "www.example.test"] {
        let field = &acme.entry("le", main)["key"];
        let pem = String::from_utf8(b64_field(field)).unwrap();
        secrets.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        );
        secrets.push(field.as_str().unwrap()[40..100].to_owned());
    }

    let (_t, mismatched) =
        broken(|a| a.swap_in_key("le", "turn.example.test", ("le", "www.example.test")));
    let tmp = tempfile::tempdir().unwrap();
    let (acme, domain, out) = (fixture("acme.json"), "turn.example.test", tmp.path());
    let trace = [("RUST_LOG", "trace")];
    let runs = [
        once_env(&acme, domain, out, &[], &trace),
        once_env(
            &acme,
            domain,
            out,
            &["--dry-run", "--log-format", "json"],
            &trace,
        ),
        // The broken entry is le's; without --resolver, le-ec's would be chosen.
        once_env(&mismatched, domain, out, &["--resolver", "le"], &trace),
        certsync(&["list", "--acme", acme.to_str().unwrap()]),
    ];
    // Each run must have done its work (a write, a dry run, a refusal, a listing), or
    // silence about the key would prove nothing.
    for (run, code) in runs.iter().zip([0, 0, 1, 0]) {
        run.expect_code(code);
        for s in &secrets {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "key material in output:\n{run:?}"
            );
        }
    }
}

/// A real ENOSPC: the out dir is a tiny tmpfs. Root is needed to mount it, and the
/// tests run as root on the project's machines and CI.
#[test]
fn a_full_disk_keeps_the_old_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("small");
    std::fs::create_dir(&out).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mounting a tmpfs needs root; the tests run as root"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&out);

    let acme = fixture("acme.json");
    let run = |resolver| once(&acme, "turn.example.test", &out, &["--resolver", resolver]);
    run("le").expect_code(0);
    let before = dir_state(&out);
    // Fill the rest of the disk; the new (EC) files then cannot be staged.
    let filler = out.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let mut expected = before.clone();
    expected.insert("filler".into(), dir_state(&out).remove("filler").unwrap());

    run("le-ec")
        .expect_code(1)
        .expect_says(&["No space left on device", "turn.example.test"]);
    assert_eq!(
        dir_state(&out),
        expected,
        "old files intact, no temporary file left"
    );
}
