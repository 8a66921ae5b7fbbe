//! A reload owed to a target, recorded as an empty file next to its files.
//!
//! It is set before the first attempt and cleared on success, so a reload that failed
//! (or a certsync that died between writing and reloading) is still done by the next
//! pass or the next `--once`, although the files themselves are then unchanged.
//!
//! certsync runs as root in a folder other users may write to: the marker is never
//! opened through a symlink. Whatever sits at its name that is not a regular file is
//! removed (unlink does not follow links), and the file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so a link planted between the two steps makes the
//! create fail instead of truncating or creating a file elsewhere.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The marker file of one target.
#[derive(Debug, Clone)]
pub struct Pending {
    path: PathBuf,
}

impl Pending {
    /// The marker for the target whose certificate file is `cert_file` in `dir`.
    pub fn new(dir: &Path, cert_file: &str) -> Pending {
        Pending {
            path: dir.join(format!(".certsync-reload-pending.{cert_file}")),
        }
    }

    /// Whether a reload is owed: a regular file (not a link) is at the marker's name.
    pub fn is_set(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_file())
    }

    pub fn set(&self) -> std::io::Result<()> {
        if self.is_set() {
            return Ok(());
        }
        self.clear()?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(_) => Ok(()),
            // A regular file made by a second writer in between is the same marker.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && self.is_set() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the marker, or whatever was planted at its name; never what a link
    /// points to.
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir(&self.path),
            Ok(_) => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_replaced_never_followed() {
        let out = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let pending = Pending::new(out.path(), "fullchain.pem");
        let link = out.path().join(".certsync-reload-pending.fullchain.pem");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(!pending.is_set(), "a link is not a marker");
        pending.set().unwrap();
        assert!(pending.is_set());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

        // A dangling link must not create its target either.
        pending.clear().unwrap();
        let ghost = elsewhere.path().join("ghost");
        std::os::unix::fs::symlink(&ghost, &link).unwrap();
        pending.set().unwrap();
        assert!(!ghost.exists(), "nothing created outside the out dir");
        pending.clear().unwrap();
        assert!(!link.exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }
}
