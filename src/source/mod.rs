//! Where certificates come from: Traefik's acme.json or a certbot lineage.
//!
//! A source is read whole into a [`Snapshot`] (one `read`, so a pass works on one
//! consistent version of the file), then parsed into [`Candidate`]s that borrow from
//! it. Nothing here decodes base64 or parses X.509: that is `bundle`'s job, done only
//! for the candidate that gets chosen.

pub mod acme;
pub mod certbot;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which source a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Traefik's acme.json (any layout).
    Acme(PathBuf),
    /// A certbot `live/<name>/` folder.
    Certbot(PathBuf),
}

impl SourceSpec {
    /// The path to watch for changes: the file itself, or the lineage folder.
    pub fn path(&self) -> &Path {
        match self {
            SourceSpec::Acme(p) | SourceSpec::Certbot(p) => p,
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Acme(p) => write!(f, "acme.json {}", p.display()),
            SourceSpec::Certbot(p) => write!(f, "certbot lineage {}", p.display()),
        }
    }
}

/// How a candidate's `certificate` and `key` text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Base64 of PEM text, as in acme.json.
    Base64,
    /// PEM text itself, as in certbot's files.
    Pem,
}

/// One certificate a source offers, still encoded as stored.
#[derive(Clone)]
pub struct Candidate<'a> {
    /// `None` for sources without resolvers (acme.json v1, certbot).
    pub resolver: Option<Cow<'a, str>>,
    pub main: Cow<'a, str>,
    pub sans: Vec<Cow<'a, str>>,
    /// The chain, leaf first.
    pub certificate: Cow<'a, str>,
    /// The private key. Never logged: `Debug` leaves it out.
    pub key: Cow<'a, str>,
    pub encoding: Encoding,
}

impl Candidate<'_> {
    /// Every name the source says this certificate is for: main first, then SANs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.main).chain(self.sans.iter().map(|s| &**s))
    }

    /// `resolver "le", certificate "turn.example.com"`, for messages.
    pub fn describe(&self) -> String {
        match &self.resolver {
            Some(r) => format!("resolver {r:?}, certificate {:?}", self.main),
            None => format!("certificate {:?}", self.main),
        }
    }
}

impl fmt::Debug for Candidate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("resolver", &self.resolver)
            .field("main", &self.main)
            .field("sans", &self.sans)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// An entry the source holds but that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub resolver: Option<String>,
    pub main: String,
    pub reason: &'static str,
}

/// What a source offered at one moment.
#[derive(Debug, Default)]
pub struct Candidates<'a> {
    pub list: Vec<Candidate<'a>>,
    pub skipped: Vec<Skipped>,
}

/// The raw bytes of a source at one moment.
pub enum Snapshot {
    Acme { path: PathBuf, bytes: Vec<u8> },
    Certbot(certbot::Lineage),
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Missing, empty or half-written: retry later, keep the files in place.
    #[error("{source_name} is not ready: {reason}")]
    NotReady { source_name: String, reason: String },
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

impl SourceError {
    pub fn is_not_ready(&self) -> bool {
        matches!(self, SourceError::NotReady { .. })
    }
}

impl Snapshot {
    /// Reads the source whole.
    pub fn read(spec: &SourceSpec) -> Result<Snapshot, SourceError> {
        match spec {
            SourceSpec::Acme(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Snapshot::Acme {
                    path: path.clone(),
                    bytes,
                }),
                Err(e) => Err(io_error(spec, e)),
            },
            SourceSpec::Certbot(dir) => certbot::Lineage::read(dir)
                .map(Snapshot::Certbot)
                .map_err(|e| io_error(spec, e)),
        }
    }

    /// The bytes that identify this version of the source (to skip identical rewrites).
    pub fn content(&self) -> Vec<&[u8]> {
        match self {
            Snapshot::Acme { bytes, .. } => vec![bytes],
            Snapshot::Certbot(l) => vec![&l.fullchain, &l.privkey],
        }
    }

    /// Parses the snapshot into candidates that borrow from it.
    pub fn candidates(&self) -> Result<Candidates<'_>, SourceError> {
        match self {
            Snapshot::Acme { path, bytes } => {
                let source_name = format!("acme.json {}", path.display());
                match acme::parse(bytes) {
                    Ok(doc) => Ok(Candidates {
                        list: doc.entries,
                        skipped: doc.skipped,
                    }),
                    Err(e) if e.is_not_ready() => Err(SourceError::NotReady {
                        source_name,
                        reason: e.to_string(),
                    }),
                    Err(e) => Err(SourceError::Invalid {
                        source_name,
                        reason: e.to_string(),
                    }),
                }
            }
            Snapshot::Certbot(lineage) => lineage.candidate().map(|c| Candidates {
                list: vec![c],
                skipped: Vec::new(),
            }),
        }
    }
}

/// Reads and parses the source, waiting out a half-written file: each `NotReady` sleeps
/// the next delay of `backoff`; when it runs dry the last `NotReady` is returned.
/// `use_candidates` runs on the first version that parses, so a big file is parsed once.
pub async fn read_when_ready<R>(
    spec: &SourceSpec,
    mut backoff: impl Iterator<Item = std::time::Duration>,
    use_candidates: impl FnOnce(&Candidates<'_>) -> R,
) -> Result<R, SourceError> {
    loop {
        let error = match Snapshot::read(spec) {
            Ok(snapshot) => match snapshot.candidates() {
                Ok(candidates) => return Ok(use_candidates(&candidates)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        match backoff.next() {
            Some(delay) if error.is_not_ready() => {
                tracing::debug!(%error, ?delay, "source not ready, retrying");
                tokio::time::sleep(delay).await;
            }
            _ => return Err(error),
        }
    }
}

fn io_error(spec: &SourceSpec, e: std::io::Error) -> SourceError {
    let source_name = spec.to_string();
    if e.kind() == std::io::ErrorKind::NotFound {
        SourceError::NotReady {
            source_name,
            reason: "it does not exist (yet)".into(),
        }
    } else {
        SourceError::Invalid {
            source_name,
            reason: format!("cannot read it: {e}"),
        }
    }
}
