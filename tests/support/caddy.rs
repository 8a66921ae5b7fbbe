//! A real Caddy (Debian's `caddy`) getting its certificates from Pebble into a storage
//! folder of the test's own.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, spawn_logged, wait_listening, Pebble};

/// A running `caddy run`, killed on drop.
pub struct Caddy {
    /// The storage folder (`storage file_system`), the one holding `certificates/`.
    pub storage: PathBuf,
    /// The issuer folder Caddy names after Pebble's directory URL.
    pub issuer: String,
    pub log: PathBuf,
    child: Child,
}

impl Caddy {
    /// Starts Caddy in `work/caddy` serving `sites` (each gets its own certificate)
    /// on high ports, with its admin API off and renewals checked every second.
    pub fn start(work: &Path, pebble: &Pebble, sites: &[&str]) -> Caddy {
        let dir = work.join("caddy");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).unwrap();
        let (http_port, https_port) = (free_port(), free_port());
        let caddyfile = dir.join("Caddyfile");
        fs::write(
            &caddyfile,
            format!(
                "{{\n\
                 \tadmin off\n\
                 \thttp_port {http_port}\n\
                 \thttps_port {https_port}\n\
                 \tstorage file_system {storage}\n\
                 \tacme_ca {ca}\n\
                 \tacme_ca_root {root}\n\
                 \tskip_install_trust\n\
                 \trenew_interval 1s\n\
                 }}\n\
                 {sites} {{\n\
                 \trespond \"ok\"\n\
                 }}\n",
                storage = storage.display(),
                ca = pebble.dir_url,
                root = pebble.ca_file.display(),
                sites = sites.join(", "),
            ),
        )
        .unwrap();
        let log = dir.join("caddy.log");
        let mut cmd = Command::new("caddy");
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            // Caddy keeps its autosave and other state under HOME and XDG folders.
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"));
        let mut child = spawn_logged(cmd, &log);
        wait_listening(
            SocketAddr::from(([127, 0, 0, 1], https_port)),
            &mut child,
            "caddy",
            &log,
            Duration::from_secs(30),
        );
        // `https://127.0.0.1:PORT/dir` → `127.0.0.1-PORT-dir`.
        let issuer = pebble
            .dir_url
            .trim_start_matches("https://")
            .replace([':', '/'], "-");
        Caddy {
            storage,
            issuer,
            log,
            child,
        }
    }

    /// `certificates/<issuer>/<name>/<name>.<ext>`.
    pub fn file(&self, name: &str, ext: &str) -> PathBuf {
        self.storage
            .join("certificates")
            .join(&self.issuer)
            .join(name)
            .join(format!("{name}.{ext}"))
    }

    /// Waits until `name`'s certificate, key and metadata are all in the storage.
    #[track_caller]
    pub fn wait_for(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !["crt", "key", "json"]
            .iter()
            .all(|ext| fs::metadata(self.file(name, ext)).is_ok_and(|m| m.len() > 0))
        {
            assert!(
                Instant::now() < deadline,
                "Caddy has no certificate for {name} after {timeout:?}\n{}",
                super::log_tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
