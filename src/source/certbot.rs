//! A certbot lineage: `live/<name>/fullchain.pem` and `privkey.pem`.
//!
//! certbot keeps these as symlinks into `archive/` and swaps them on renewal; reading
//! through the links gives the current version. The names come from the certificate
//! itself, since a lineage has no other record of them that certbot promises to keep.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::{Candidate, Encoding, SourceError};
use crate::leaf::Leaf;

/// The two files of a lineage, read at one moment.
pub struct Lineage {
    pub dir: PathBuf,
    pub fullchain: Vec<u8>,
    pub privkey: Vec<u8>,
}

impl Lineage {
    pub fn read(dir: &Path) -> std::io::Result<Lineage> {
        let fullchain = std::fs::read(dir.join("fullchain.pem"))?;
        let privkey = std::fs::read(dir.join("privkey.pem"))?;
        Ok(Lineage {
            dir: dir.to_owned(),
            fullchain,
            privkey,
        })
    }

    pub fn candidate(&self) -> Result<Candidate<'_>, SourceError> {
        let invalid = |reason: String| SourceError::Invalid {
            source_name: format!("certbot lineage {}", self.dir.display()),
            reason,
        };
        if self.fullchain.iter().all(u8::is_ascii_whitespace) {
            return Err(SourceError::NotReady {
                source_name: format!("certbot lineage {}", self.dir.display()),
                reason: "fullchain.pem is empty".into(),
            });
        }
        let certificate = std::str::from_utf8(&self.fullchain)
            .map_err(|_| invalid("fullchain.pem is not PEM text".into()))?;
        let key = std::str::from_utf8(&self.privkey)
            .map_err(|_| invalid("privkey.pem is not PEM text".into()))?;
        let names =
            leaf_names(&self.fullchain).map_err(|e| invalid(format!("fullchain.pem: {e}")))?;
        let mut names = names.into_iter();
        let main = names
            .next()
            .ok_or_else(|| invalid("the leaf names no domain".into()))?;
        Ok(Candidate {
            resolver: None,
            main: Cow::Owned(main),
            sans: names.map(Cow::Owned).collect(),
            certificate: Cow::Borrowed(certificate),
            key: Cow::Borrowed(key),
            encoding: Encoding::Pem,
        })
    }
}

/// The leaf's DNS names, read from the first certificate of the chain.
fn leaf_names(pem: &[u8]) -> Result<Vec<String>, String> {
    let block = ::pem::parse(pem).map_err(|e| format!("no PEM certificate: {e}"))?;
    Leaf::from_der(block.contents()).map(|leaf| leaf.names)
}
