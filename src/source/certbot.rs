//! A certbot lineage: `live/<name>/fullchain.pem` and `privkey.pem`.
//!
//! certbot keeps these as symlinks into `archive/` and swaps them on renewal; reading
//! through the links gives the current version. The names come from the certificate
//! itself, since a lineage has no other record of them that certbot promises to keep.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::Candidate;
use crate::leaf::{Encoding, Leaf, LeafError};

/// The two files of a lineage, read at one moment.
pub struct Lineage {
    pub dir: PathBuf,
    pub fullchain: Vec<u8>,
    pub privkey: Vec<u8>,
}

impl Lineage {
    /// Reads both files, each a regular file (after certbot's links) of at most
    /// `max_size` bytes.
    pub fn read(dir: &Path, max_size: u64) -> std::io::Result<Lineage> {
        let read = |name: &str| {
            let path = dir.join(name);
            super::open::read_all(super::open::regular(&path, max_size)?, max_size)
        };
        let fullchain = read("fullchain.pem")?;
        let privkey = read("privkey.pem")?;
        Ok(Lineage {
            dir: dir.to_owned(),
            fullchain,
            privkey,
        })
    }

    pub fn candidate(&self) -> Result<Candidate<'_>, LineageError> {
        if self.fullchain.iter().all(u8::is_ascii_whitespace) {
            return Err(LineageError::Empty);
        }
        let certificate = std::str::from_utf8(&self.fullchain)
            .map_err(|_| LineageError::NotText("fullchain.pem"))?;
        let key =
            std::str::from_utf8(&self.privkey).map_err(|_| LineageError::NotText("privkey.pem"))?;
        let block = ::pem::parse(&self.fullchain).map_err(LineageError::NoCertificate)?;
        let mut names = Leaf::from_der(block.contents())
            .map_err(LineageError::Leaf)?
            .names
            .into_iter();
        let main = names.next().ok_or(LineageError::NoName)?;
        Ok(Candidate {
            resolver: None,
            main: Cow::Owned(main),
            sans: names.map(Cow::Owned).collect(),
            certificate: Cow::Borrowed(certificate),
            key: Cow::Borrowed(key),
            encoding: Encoding::Pem,
            digest: None,
        })
    }
}

/// Why a lineage's files are not a usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// certbot writes new files before it swaps the links; an empty one is mid-write.
    #[error("fullchain.pem is empty")]
    Empty,
    #[error("{0} is not PEM text")]
    NotText(&'static str),
    #[error("fullchain.pem holds no PEM certificate")]
    NoCertificate(#[source] ::pem::PemError),
    #[error("fullchain.pem")]
    Leaf(#[source] LeafError),
    #[error("the leaf names no domain")]
    NoName,
}

impl LineageError {
    pub fn is_not_ready(&self) -> bool {
        matches!(self, LineageError::Empty)
    }
}
