//! Output formats beyond the PEM files: the key and full chain in one PEM (HAProxy,
//! 3CX) and a PKCS#12 (Plex, Java), both built from a validated [`Bundle`].
//!
//! A PKCS#12 is made with a random salt and IV, so two encodings of the same key and
//! chain never have the same bytes. To keep rule 3 (unchanged content: no write, no
//! reload), the file in place is opened with the current password first: when it holds
//! the same key and chain, its bytes are what is "wanted", and nothing is rewritten.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
use pkcs8::der::{Decode, Encode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::bundle::Bundle;

/// A PKCS#12 in place larger than this is not one certsync wrote: it is replaced
/// without being read.
const MAX_EXISTING: u64 = 1 << 20;

/// Why a format could not be built. Never quotes the password nor key bytes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read the PKCS#12 password file {}", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the PKCS#12 password file {} starts with an empty line: an empty password needs an empty file", path.display())]
    EmptyLine { path: PathBuf },
    #[error("the private key cannot be put in a PKCS#12: {0}")]
    Key(String),
    #[error("cannot encode the PKCS#12: {0}")]
    Pkcs12(String),
}

/// The full chain (leaf first) then the key, in one PEM: the order of
/// `cat fullchain.pem privkey.pem`, which HAProxy's `crt` and other servers read.
pub fn combined_pem(bundle: &Bundle) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        bundle.fullchain.len() + bundle.key.len() + 1,
    ));
    out.extend_from_slice(&bundle.fullchain);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(&bundle.key);
    out
}

/// Reads the password: the first line of the file, without its line ending. An empty
/// file is an empty password; a file whose first line is empty is refused, so a stray
/// newline never silently means "no password".
pub fn read_password(path: &Path) -> Result<Zeroizing<String>, FormatError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        FormatError::PasswordFile {
            path: path.to_owned(),
            source,
        }
    })?);
    if text.is_empty() {
        return Ok(Zeroizing::new(String::new()));
    }
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(FormatError::EmptyLine {
            path: path.to_owned(),
        });
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// A PKCS#12 of the bundle's key and chain under `password`, with `alias` as its
/// friendly name. `existing` (the file in place, if any) is returned as it is when it
/// already holds this key and chain under this password.
pub fn pkcs12(
    bundle: &Bundle,
    alias: &str,
    password: &str,
    existing: Option<&[u8]>,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let key = pkcs8_der(bundle)?;
    let chain: Vec<Vec<u8>> = ::pem::parse_many(&bundle.fullchain)
        .map_err(|e| FormatError::Pkcs12(e.to_string()))?
        .into_iter()
        .map(|b| b.into_contents())
        .collect();
    if let Some(old) = existing {
        if holds(old, password, &key, &chain) {
            return Ok(Zeroizing::new(old.to_vec()));
        }
    }
    let certs = chain
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|e| FormatError::Pkcs12(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    // The local key id ties the key to its certificate; a digest of the leaf is stable.
    let key_id = sha2::Sha256::digest(&bundle.leaf_der);
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(&*key, key_id, certs)),
    );
    store
        .writer(password)
        .write()
        .map(Zeroizing::new)
        .map_err(|e| FormatError::Pkcs12(e.to_string()))
}

/// Whether a PKCS#12 opens with `password` and holds exactly this key and chain.
fn holds(p12: &[u8], password: &str, key: &[u8], chain: &[Vec<u8>]) -> bool {
    let Ok(store) = KeyStore::from_pkcs12(p12, password) else {
        return false;
    };
    let Some((_, held)) = store.private_key_chain() else {
        return false;
    };
    held.key() == key
        && held.chain().len() == chain.len()
        && held
            .chain()
            .iter()
            .zip(chain)
            .all(|(c, der)| c.as_der() == der.as_slice())
}

/// The key as PKCS#8 DER, which PKCS#12 requires. PKCS#1 (RSA) and SEC1 (EC) keys are
/// wrapped with the algorithm of the leaf's public key, which is the key's own.
fn pkcs8_der(bundle: &Bundle) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let der =
        PrivateKeyDer::from_pem_slice(&bundle.key).map_err(|e| FormatError::Key(e.to_string()))?;
    let raw = match &der {
        PrivateKeyDer::Pkcs8(k) => return Ok(Zeroizing::new(k.secret_pkcs8_der().to_vec())),
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
        _ => return Err(FormatError::Key("unknown key encoding".into())),
    };
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&bundle.leaf.spki)
        .map_err(|e| FormatError::Key(format!("the leaf's public key: {e}")))?;
    pkcs8::PrivateKeyInfo::new(spki.algorithm, raw)
        .to_der()
        .map(Zeroizing::new)
        .map_err(|e| FormatError::Key(e.to_string()))
}

/// The file in place at `path`, if it is a regular file (never through a symlink) of
/// a size a PKCS#12 of certsync's can have.
pub fn read_existing(path: &Path) -> Option<Zeroizing<Vec<u8>>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_EXISTING {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}
