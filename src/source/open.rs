//! Opening a source file without trusting what it is: a FIFO would block the open (and
//! the runtime with it) until a writer came, a device such as /dev/zero never ends, and
//! a huge file would be held in memory. Rule 10: a regular file (after symlinks), no
//! larger than `--max-source-size`, anything else refused with a message.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// `--max-source-size`'s default, 512 MB: a hundred times the largest real acme.json.
pub const DEFAULT_MAX_SIZE: u64 = 512_000_000;

/// Why a source file was refused before its content was read. It travels inside an
/// `io::Error` (kind `InvalidInput`), so every reader reports it as a read failure.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than --max-source-size ({size} bytes > {max})")]
    TooLarge { size: u64, max: u64 },
}

impl From<Refused> for std::io::Error {
    fn from(r: Refused) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, r)
    }
}

/// Opens `path` for reading (symlinks followed, as Kubernetes and certbot use them)
/// without blocking, and refuses anything but a regular file of at most `max` bytes.
pub fn regular(path: &Path, max: u64) -> std::io::Result<File> {
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits() | OFlag::O_CLOEXEC.bits())
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "a special file"
        };
        return Err(Refused::NotRegular(what).into());
    }
    if meta.len() > max {
        return Err(Refused::TooLarge {
            size: meta.len(),
            max,
        }
        .into());
    }
    Ok(file)
}

/// The whole content of `file`, refused if it grew past `max` bytes since it was
/// opened (memory never holds more than `max + 1` bytes of it).
pub fn read_all(file: File, max: u64) -> std::io::Result<Vec<u8>> {
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0).min(max);
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Refused::TooLarge {
            size: bytes.len() as u64,
            max,
        }
        .into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(e: std::io::Error) -> String {
        e.get_ref().map(ToString::to_string).unwrap_or_default()
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("acme.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let said = refusal(regular(&fifo, DEFAULT_MAX_SIZE).unwrap_err());
        assert_eq!(said, "it is a FIFO, not a regular file");
        let said = refusal(regular(Path::new("/dev/zero"), DEFAULT_MAX_SIZE).unwrap_err());
        assert_eq!(said, "it is a character device, not a regular file");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.json");
        std::fs::write(&path, b"{}").unwrap();
        assert!(refusal(regular(&path, 1).unwrap_err()).contains("2 bytes > 1"));
        assert_eq!(read_all(regular(&path, 2).unwrap(), 2).unwrap(), b"{}");
        let grown = regular(&path, 2).unwrap();
        std::fs::write(&path, b"{ }").unwrap();
        assert!(refusal(read_all(grown, 2).unwrap_err()).contains("larger than"));
    }
}
