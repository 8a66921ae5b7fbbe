//! Any PEM pair: a certificate file (leaf first, then its chain) and a key file.
//!
//! The Kubernetes case shapes this module. The kubelet mounts a TLS Secret as
//! `tls.crt -> ..data/tls.crt` and `tls.key -> ..data/tls.key`, and on every update it
//! writes a new timestamped folder, renames a `..data_tmp` symlink over `..data`, then
//! removes the old folder. Two reads, one per file, can straddle that rename and see the
//! old certificate with the new key; an in-place writer (acme.sh, older Caddy) can be
//! caught with one file new, the other old, or one empty. Such a pair is "not ready":
//! it is read again, never written.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use zeroize::Zeroizing;

use super::Candidate;
use crate::leaf::{Encoding, Leaf, LeafError};

/// A certificate or key file larger than this is not one: refusing it keeps a
/// misconfigured path (a disk image, a log) from being read whole on every pass.
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// The two files, read at one moment.
pub struct Pair {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert: Vec<u8>,
    /// Wiped from memory on drop.
    pub key: Zeroizing<Vec<u8>>,
}

impl Pair {
    /// Reads both files, following symlinks (the kubelet's `..data` links, certbot's
    /// `live/` links): the content is what counts, wherever it is kept.
    pub fn read(cert_path: &Path, key_path: &Path) -> Result<Pair, PairError> {
        let cert = read_path(cert_path)?;
        let key = Zeroizing::new(read_path(key_path)?);
        Ok(Pair {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            cert,
            key,
        })
    }

    /// The pair as a candidate named after its leaf (its first name is the main one).
    pub fn candidate(&self) -> Result<Candidate<'_>, PairError> {
        let leaf = check_pair(&self.cert, &self.key)?;
        let mut names = leaf.names.into_iter();
        let main = names.next().ok_or(PairError::NoName)?;
        Ok(Candidate {
            resolver: None,
            main: Cow::Owned(main),
            sans: names.map(Cow::Owned).collect(),
            // check_pair found both to be PEM text, so both are UTF-8.
            certificate: Cow::Borrowed(std::str::from_utf8(&self.cert).unwrap_or_default()),
            key: Cow::Borrowed(std::str::from_utf8(&self.key).unwrap_or_default()),
            encoding: Encoding::Pem,
            digest: None,
        })
    }
}

/// Why a PEM pair cannot be offered.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("{} does not exist (yet)", .0.display())]
    Missing(PathBuf),
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    #[error("{} is larger than {MAX_PEM_FILE} bytes: not a certificate or key file", .0.display())]
    TooLarge(PathBuf),
    #[error(transparent)]
    Problem(#[from] PairProblem),
    #[error("the leaf names no domain")]
    NoName,
}

impl PairError {
    pub fn is_not_ready(&self) -> bool {
        match self {
            PairError::Missing(_) => true,
            PairError::Problem(p) => p.is_not_ready(),
            _ => false,
        }
    }
}

/// What is wrong with the content of a certificate and key pair.
#[derive(Debug, thiserror::Error)]
pub enum PairProblem {
    /// Written in place and caught between truncate and write.
    #[error("the {0} file is empty")]
    Empty(&'static str),
    /// A block begins and does not end: caught mid-write.
    #[error("the {0} file is cut short")]
    Truncated(&'static str, #[source] ::pem::PemError),
    #[error("the {0} file is not PEM text")]
    NotPem(&'static str),
    #[error("the certificate file's first block")]
    Leaf(#[source] LeafError),
    /// One file renewed, the other not yet (or a swap between the two reads).
    #[error("the private key does not match the certificate (serial {0}) yet")]
    Mismatch(String),
}

impl PairProblem {
    pub fn is_not_ready(&self) -> bool {
        matches!(
            self,
            PairProblem::Empty(_) | PairProblem::Truncated(..) | PairProblem::Mismatch(_)
        )
    }
}

/// Checks that a certificate and key read at one moment form a settled pair, and
/// returns the leaf. Anything else wrong (a key type rustls cannot check, a chain out
/// of order) is left for [`crate::bundle::validate`] to report in its words.
pub fn check_pair(cert: &[u8], key: &[u8]) -> Result<Leaf, PairProblem> {
    let pem_text = |bytes: &[u8], what: &'static str| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(PairProblem::Empty(what));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN ") => Ok(()),
            _ => Err(PairProblem::NotPem(what)),
        }
    };
    pem_text(cert, "certificate")?;
    pem_text(key, "key")?;
    let block = ::pem::parse(cert).map_err(|e| PairProblem::Truncated("certificate", e))?;
    let leaf = Leaf::from_der(block.contents()).map_err(PairProblem::Leaf)?;
    ::pem::parse(key).map_err(|e| PairProblem::Truncated("key", e))?;
    if crate::bundle::key_fits(key, &leaf) == Some(false) {
        return Err(PairProblem::Mismatch(leaf.serial));
    }
    Ok(leaf)
}

fn read_path(path: &Path) -> Result<Vec<u8>, PairError> {
    // O_NONBLOCK: a FIFO planted in place of the file must not hang the pass.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits() | OFlag::O_CLOEXEC.bits())
        .open(path)
        .map_err(|e| io_error(path, e))?;
    read_regular(file, path)
}

/// Reads an opened file that must be a regular file of at most [`MAX_PEM_FILE`] bytes.
pub(crate) fn read_regular(mut file: File, path: &Path) -> Result<Vec<u8>, PairError> {
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(PairError::NotRegular(path.to_owned()));
    }
    if meta.len() > MAX_PEM_FILE {
        return Err(PairError::TooLarge(path.to_owned()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file growing while it is read stops at the limit; the next pass reads it again.
    (&mut file)
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(PairError::TooLarge(path.to_owned()));
    }
    Ok(bytes)
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> PairError {
    if e.kind() == std::io::ErrorKind::NotFound {
        PairError::Missing(path.to_owned())
    } else {
        PairError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_caught_mid_write_is_not_ready_and_garbage_is_invalid() {
        let (cert, key) = pair("a.example.test");
        let (_, other_key) = pair("b.example.test");
        let half = &cert[..cert.len() / 2];
        for (c, k) in [
            ("", key.as_str()),
            (cert.as_str(), "\n"),
            (half, key.as_str()),
            (cert.as_str(), other_key.as_str()),
        ] {
            let e = check_pair(c.as_bytes(), k.as_bytes()).unwrap_err();
            assert!(e.is_not_ready(), "{e}");
        }
        let e = check_pair(b"hello", key.as_bytes()).unwrap_err();
        assert!(!e.is_not_ready(), "{e}");
        assert_eq!(e.to_string(), "the certificate file is not PEM text");
        let leaf = check_pair(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(leaf.names, ["a.example.test"]);
    }
}
