//! A real systemd user manager for integration tests (no mocks).
//!
//! [`UserManager::start`] runs `tests/peers/systemd-user.sh start DIR` in a fresh
//! temporary directory: DIR is the manager's `XDG_RUNTIME_DIR`, its session bus is
//! `unix:path=DIR/bus`, unit files go in `DIR/systemd/user/`. Dropping the value runs
//! `systemd-user.sh stop DIR`, which stops every unit, the manager and its bus.
//! Several managers can run at once (one per test).
//!
//! Child processes that must talk to this manager (certsync itself, `systemctl`,
//! `busctl`) need [`UserManager::env`] in their environment.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `tests/peers/systemd-user.sh` of this crate.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/systemd-user.sh")
}

/// A running `systemd --user` with its own session bus, stopped on drop.
pub struct UserManager {
    dir: tempfile::TempDir,
    stopped: bool,
}

impl UserManager {
    /// Starts a manager; panics (with the script's diagnostics) if it does not come up.
    pub fn start() -> UserManager {
        match UserManager::try_start() {
            Ok(m) => m,
            Err(e) => panic!("systemd user manager: {e}"),
        }
    }

    /// Starts a manager whose directory (and so its bus) is under `parent` instead of
    /// /tmp: a unit with `PrivateTmp=yes` would not see a bus in /tmp.
    pub fn start_in(parent: &Path) -> UserManager {
        match UserManager::try_start_in(parent) {
            Ok(m) => m,
            Err(e) => panic!("systemd user manager: {e}"),
        }
    }

    /// Starts a manager, waiting until `SystemState` is "running" (the script's
    /// timeout is 20 s).
    pub fn try_start() -> Result<UserManager, String> {
        UserManager::try_start_in(&std::env::temp_dir())
    }

    fn try_start_in(parent: &Path) -> Result<UserManager, String> {
        let dir = tempfile::Builder::new()
            .prefix("certsync-sd-")
            .tempdir_in(parent)
            .map_err(|e| format!("tempdir in {}: {e}", parent.display()))?;
        let out = Command::new(script_path())
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script_path().display()))?;
        let mut m = UserManager {
            dir,
            stopped: false,
        };
        if !out.status.success() {
            m.stopped = true; // the script cleans up after a failed start
            return Err(format!(
                "systemd-user.sh start failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(m)
    }

    /// `XDG_RUNTIME_DIR` of this manager.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where unit files go (`DIR/systemd/user`).
    pub fn unit_dir(&self) -> PathBuf {
        self.dir().join("systemd/user")
    }

    /// `unix:path=DIR/bus`
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.dir().join("bus").display())
    }

    /// Environment for child processes that must reach this manager.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_RUNTIME_DIR".to_string(),
                self.dir().display().to_string(),
            ),
            ("DBUS_SESSION_BUS_ADDRESS".to_string(), self.bus_address()),
        ]
    }

    /// `Command::new(program)` with [`UserManager::env`] set.
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env()).stdin(Stdio::null());
        c
    }

    /// `systemctl --user ARGS`; panics unless it succeeds.
    pub fn systemctl(&self, args: &[&str]) -> String {
        let out = self.run("systemctl", "--user", args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `busctl --user ARGS`; panics unless it succeeds.
    pub fn busctl(&self, args: &[&str]) -> String {
        let out = self.run("busctl", "--user", args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, prog: &str, first: &str, args: &[&str]) -> Output {
        super::run_ok(self.command(prog).arg(first).args(args))
    }

    /// Writes `DIR/systemd/user/NAME` and runs `systemctl --user daemon-reload`.
    pub fn install_unit(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.unit_dir().join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.daemon_reload();
        path
    }

    pub fn daemon_reload(&self) {
        self.systemctl(&["daemon-reload"]);
    }

    /// `systemctl --user start NAME` (returns once the start job is done; for
    /// Type=simple that is when the process has been spawned).
    pub fn start_unit(&self, name: &str) {
        self.systemctl(&["start", name]);
    }

    /// D-Bus object path of a unit (systemd's escaping: every byte outside
    /// `[A-Za-z0-9]`, and a leading digit, becomes `_xx`).
    pub fn unit_object_path(name: &str) -> String {
        let mut s = String::from("/org/freedesktop/systemd1/unit/");
        for (i, b) in name.bytes().enumerate() {
            if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
                s.push(b as char);
            } else {
                s.push_str(&format!("_{b:02x}"));
            }
        }
        s
    }

    /// A property of a unit, as busctl prints it: `u 1234`, `s "active"`.
    pub fn unit_property(&self, unit: &str, interface: &str, property: &str) -> String {
        let path = Self::unit_object_path(unit);
        self.busctl(&[
            "get-property",
            "org.freedesktop.systemd1",
            &path,
            interface,
            property,
        ])
        .trim()
        .to_string()
    }

    /// `MainPID` of a service unit, read over D-Bus with busctl (0 = not running).
    pub fn stop_unit(&self, name: &str) {
        self.systemctl(&["stop", name]);
    }

    /// `ActiveState` of the unit: `active`, `failed`, …
    pub fn active_state(&self, unit: &str) -> String {
        let v = self.unit_property(unit, "org.freedesktop.systemd1.Unit", "ActiveState");
        v.trim_start_matches("s ").trim_matches('"').to_string()
    }

    pub fn main_pid(&self, unit: &str) -> u32 {
        let v = self.unit_property(unit, "org.freedesktop.systemd1.Service", "MainPID");
        v.strip_prefix("u ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected MainPID answer for {unit}: {v:?}"))
    }

    /// Stops the manager now (also done on drop).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let out = Command::new(script_path())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "systemd-user.sh stop {}: {}{}",
                self.dir.path().display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run systemd-user.sh stop: {e}"),
        }
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        self.stop();
    }
}
