//! Big acme.json files for the benchmarks, from the one generator
//! `benches/make-big-acme.py` (which `benches/compare.sh` runs too), so that every
//! benchmark reads the same file: one resolver `le` with the fixture's Account and `n`
//! certificates, copies of the fixture's RSA2048 entries under new names, then the
//! fixture's own [`SELECTED`] entry, untouched and valid, last.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The domain whose certificate is the last entry (the script's `SELECTED`).
pub const SELECTED: &str = "www.example.test";

/// The acme.json Traefik wrote, committed as a fixture.
pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/acme.json")
}

/// An acme.json of `n` certificates whose last one is [`SELECTED`].
pub fn big_acme(n: usize) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/make-big-acme.py");
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("acme.json");
    let status = Command::new("python3")
        .arg(&script)
        .arg(n.to_string())
        .arg(&out)
        .arg("--fixture")
        .arg(fixture_path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    assert!(status.success(), "{} {n}: {status}", script.display());
    std::fs::read(&out).expect("the generated acme.json")
}
