//! Running the built `certsync` binary, and the fixture files it reads.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::Value;

/// A file under `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless stderr or stdout contains every piece.
    #[track_caller]
    pub fn expect_says(&self, pieces: &[&str]) -> &Run {
        let all = format!("{}{}", self.stdout, self.stderr);
        for p in pieces {
            assert!(all.contains(p), "output lacks {p:?}:\n{all}");
        }
        self
    }
}

/// A `certsync` command with no CERTSYNC_* or certbot variables inherited, so the
/// developer's environment cannot change a test.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certsync"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CERTSYNC_") || k.starts_with("RENEWED_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn certsync(args: &[&str]) -> Run {
    Run::from(command().args(args).output().expect("run certsync"))
}

pub fn certsync_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(
        command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run certsync"),
    )
}

/// Per file name: content, mode, owner and inode.
pub type DirState = BTreeMap<String, (Vec<u8>, u32, u32, u64)>;

/// Every file in a folder, to prove nothing moved.
pub fn dir_state(dir: &Path) -> DirState {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            let content = std::fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                (content, m.mode() & 0o7777, m.uid(), m.ino()),
            )
        })
        .collect()
}

/// An acme.json as a JSON value, to derive broken variants from a real one.
pub struct Acme(pub Value);

impl Acme {
    pub fn load(path: &Path) -> Acme {
        Acme(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
    }

    /// The entry of `resolver` whose main domain is `main`.
    pub fn entry(&mut self, resolver: &str, main: &str) -> &mut Value {
        self.0[resolver]["Certificates"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("no resolver {resolver}"))
            .iter_mut()
            .find(|c| c["domain"]["main"] == main)
            .unwrap_or_else(|| panic!("no {main} in {resolver}"))
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, serde_json::to_vec_pretty(&self.0).unwrap()).unwrap();
    }
}

pub fn b64_decode(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

pub fn b64_encode(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}
