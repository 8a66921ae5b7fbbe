//! Where certificates come from: Traefik's acme.json, a certbot lineage, Caddy's
//! storage, or any PEM pair.
//!
//! A source is read once into a [`Snapshot`] (a pass works on one version of the
//! file), then turned into [`Candidate`]s that borrow from it. Nothing here decodes
//! base64 or parses X.509 unless asked to: that is `bundle`'s job, done only for the
//! candidate that gets chosen.
//!
//! An acme.json can hold thousands of certificates (30 MB) and be rewritten on every
//! renewal. Read for an [`Interest`] that names the targets, it is streamed through a
//! small buffer and only the entries a target could select keep their certificate and
//! key, so a pass costs a few MB of memory whatever the size of the file. Read for
//! [`Interest::everything`] (the plain [`Snapshot::read`]), it is held whole.

pub mod acme;
pub mod caddy;
pub mod certbot;
pub mod open;
pub mod pem;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::dns;
use crate::leaf::{self, Encoding, Leaf};

/// Which source a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Traefik's acme.json (any layout).
    Acme(PathBuf),
    /// A certbot `live/<name>/` folder.
    Certbot(PathBuf),
    /// Caddy's storage folder (the one holding `certificates/`).
    Caddy(PathBuf),
    /// A certificate file and a key file.
    Pem { cert: PathBuf, key: PathBuf },
}

impl SourceSpec {
    /// The source named by flags, if any.
    pub fn from_args(args: &crate::cli::SourceArgs) -> Option<SourceSpec> {
        if let Some(dir) = &args.caddy_storage {
            return Some(SourceSpec::Caddy(dir.clone()));
        }
        if let (Some(cert), Some(key)) = (&args.pem_cert, &args.pem_key) {
            return Some(SourceSpec::Pem {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        match (&args.acme, &args.certbot_lineage) {
            (Some(a), _) => Some(SourceSpec::Acme(a.clone())),
            (None, Some(c)) => Some(SourceSpec::Certbot(c.clone())),
            (None, None) => None,
        }
    }

    /// The path the source is named by: the file, the lineage or storage folder, or
    /// the certificate file of a PEM pair.
    pub fn path(&self) -> &Path {
        match self {
            SourceSpec::Acme(p) | SourceSpec::Certbot(p) | SourceSpec::Caddy(p) => p,
            SourceSpec::Pem { cert, .. } => cert,
        }
    }

    /// Whether a target must name its domain: a source that holds several
    /// certificates needs one to choose from.
    pub fn needs_domain(&self) -> bool {
        matches!(self, SourceSpec::Acme(_) | SourceSpec::Caddy(_))
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Acme(p) => write!(f, "acme.json {}", p.display()),
            SourceSpec::Certbot(p) => write!(f, "certbot lineage {}", p.display()),
            SourceSpec::Caddy(p) => write!(f, "Caddy storage {}", p.display()),
            SourceSpec::Pem { cert, key } => {
                write!(f, "PEM pair {} + {}", cert.display(), key.display())
            }
        }
    }
}

/// One certificate a source offers, still encoded as stored. When the source was read
/// for an [`Interest`], an entry that no target can select has an empty `certificate`
/// and `key` (a usable entry never has: empty ones are [`Skipped`]).
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
    /// [`crate::export::entry_digest`] of this entry, when the reader took it while
    /// reading for an export. An entry that export already holds unchanged comes with
    /// it and without its certificate and key.
    pub digest: Option<u128>,
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
    /// The leaf of each entry of `list`, when the source was read
    /// [`Interest::with_leaves`].
    pub leaves: Option<&'a Leaves>,
}

/// What a pass will take from the source, so that a reader can drop the rest as it
/// reads: the certificate and key of the entries some target could select, and, for
/// `list` and the per-certificate metrics, the leaf of every entry.
#[derive(Debug, Clone)]
pub struct Interest {
    /// `(domain, resolver)` per target; `None`: every certificate and key.
    targets: Option<Vec<(String, Option<String>)>>,
    /// `--all` exports: each wants every entry it takes...
    exports: Vec<crate::export::Export>,
    /// ...but those whose digest is here (one set per export, from its memo): its
    /// folder already holds them, and a change pass need not copy them.
    known: Vec<std::sync::Arc<crate::export::Known>>,
    leaves: bool,
    /// A larger source is refused, not read (`--max-source-size`).
    max_size: u64,
}

impl Interest {
    /// Every certificate and key: the file is held whole, as [`Snapshot::read`] does.
    pub fn everything() -> Interest {
        Interest {
            targets: None,
            exports: Vec::new(),
            known: Vec::new(),
            leaves: false,
            max_size: open::DEFAULT_MAX_SIZE,
        }
    }

    /// The certificates that targets with these `(domain, resolver)` could select
    /// (the rule of [`crate::bundle::select`]). A target without a domain takes the
    /// source's first certificate, so it needs them all.
    pub fn targets<'t>(
        targets: impl IntoIterator<Item = (Option<&'t str>, Option<&'t str>)>,
    ) -> Interest {
        let targets: Option<Vec<_>> = targets
            .into_iter()
            .map(|(domain, resolver)| Some((domain?.to_owned(), resolver.map(str::to_owned))))
            .collect();
        Interest {
            targets,
            exports: Vec::new(),
            known: Vec::new(),
            leaves: false,
            max_size: open::DEFAULT_MAX_SIZE,
        }
    }

    /// No certificate or key, only the leaf of every entry: what `certsync list` shows.
    pub fn leaves() -> Interest {
        Interest::targets([]).with_leaves(true)
    }

    /// Also (or no longer) the leaf of every entry, read while streaming: its
    /// not-after, names and key type, as [`crate::list::rows`] shows them.
    pub fn with_leaves(mut self, leaves: bool) -> Interest {
        self.leaves = leaves;
        self
    }

    /// Refuse a source larger than `bytes` rather than read it.
    pub fn with_max_size(mut self, bytes: u64) -> Interest {
        self.max_size = bytes;
        self
    }

    /// Also the certificate and key of every entry these exports take. With
    /// `skip_known`, not those an export's folder was last written from unchanged
    /// (see [`crate::export::Memo`]): the reader gives their digest instead.
    pub fn with_exports(mut self, exports: &[crate::export::Export], skip_known: bool) -> Interest {
        self.exports = exports.to_vec();
        self.known = if skip_known {
            exports.iter().map(|e| e.memo.known_entries()).collect()
        } else {
            Vec::new()
        };
        self
    }

    /// The same, keeping every exported entry: for a folder whose entries changed
    /// only in part, which needs them all.
    pub fn keeping_every_exported(mut self) -> Interest {
        self.known.clear();
        self
    }

    /// Whether a reader may drop entries an export knows.
    pub fn skips_known(&self) -> bool {
        !self.known.is_empty()
    }

    /// Whether some export takes this entry, so that a reader gives its digest.
    pub fn exported(&self, resolver: Option<&str>, main: &str, sans: &[&str]) -> bool {
        self.exports.iter().any(|e| e.takes(resolver, main, sans))
    }

    /// Whether an entry's certificate and key must be kept: some target in its
    /// resolver's scope has a domain that one of its names covers (`select` ranks only
    /// such entries; an exact name is also a covering one), or some export takes it
    /// and does not know its `digest` yet.
    pub fn wants_material(
        &self,
        resolver: Option<&str>,
        main: &str,
        sans: &[&str],
        digest: Option<u128>,
    ) -> bool {
        let Some(targets) = &self.targets else {
            return true;
        };
        let known =
            |i: usize| digest.is_some_and(|d| self.known.get(i).is_some_and(|k| k.contains(&d)));
        if self
            .exports
            .iter()
            .enumerate()
            .any(|(i, e)| e.takes(resolver, main, sans) && !known(i))
        {
            return true;
        }
        targets.iter().any(|(domain, in_resolver)| {
            (in_resolver.is_none() || in_resolver.as_deref() == resolver)
                && std::iter::once(main)
                    .chain(sans.iter().copied())
                    .any(|name| dns::name_covers(name, domain))
        })
    }

    /// Whether the file can be streamed: not when every certificate is kept anyway
    /// (one buffer of the file's size is then the smallest way to hold them).
    fn streams(&self) -> bool {
        self.targets.is_some()
    }
}

/// The leaf DER of each entry of a source, taken while it was read, in one buffer.
#[derive(Debug, Default)]
pub struct Leaves {
    der: Vec<u8>,
    /// Where each leaf is in `der`, or why it could not be read, as `list` shows it.
    entries: Vec<Result<Range<usize>, String>>,
}

impl Leaves {
    fn push(&mut self, certificate: &str, encoding: Encoding, scratch: &mut Vec<u8>) {
        let start = self.der.len();
        let result = leaf::stored_leaf_der(certificate, encoding, scratch, &mut self.der);
        if result.is_err() {
            self.der.truncate(start);
        }
        self.entries.push(
            result
                .map(|()| start..self.der.len())
                .map_err(|e| crate::error::chain(&e)),
        );
    }

    /// The leaf of the `index`th entry, or why it cannot be read.
    pub fn leaf(&self, index: usize) -> Result<Leaf, String> {
        match self.entries.get(index) {
            Some(Ok(range)) => {
                Leaf::from_der(&self.der[range.clone()]).map_err(|e| crate::error::chain(&e))
            }
            Some(Err(reason)) => Err(reason.clone()),
            None => Err("not read in this pass".to_owned()),
        }
    }
}

/// A source at one moment.
pub enum Snapshot {
    Acme(AcmeSnapshot),
    Certbot(certbot::Lineage),
    Caddy(caddy::Storage),
    Pem(pem::Pair),
}

/// An acme.json at one moment.
pub struct AcmeSnapshot {
    path: PathBuf,
    /// xxh3-128 of the content, little-endian.
    digest: [u8; 16],
    content: AcmeContent,
}

enum AcmeContent {
    /// The whole file, for [`acme::parse`].
    Whole(Vec<u8>),
    /// What a stream read kept.
    Streamed(acme::Streamed),
    /// A stream read found it cut short; what [`acme::parse`] would have said.
    Incomplete(String),
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Missing, empty or half-written: retry later, keep the files in place.
    #[error("{origin} is not ready")]
    NotReady {
        origin: String,
        #[source]
        cause: SourceProblem,
    },
    #[error("{origin}")]
    Invalid {
        origin: String,
        #[source]
        cause: SourceProblem,
    },
}

/// What is wrong with a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceProblem {
    #[error("it does not exist (yet)")]
    Missing,
    #[error("cannot read it")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Acme(#[from] acme::AcmeParseError),
    #[error(transparent)]
    Lineage(#[from] certbot::LineageError),
    // Boxed: their file paths and parser errors would triple every Result's size.
    #[error(transparent)]
    Caddy(Box<caddy::CaddyError>),
    #[error(transparent)]
    Pair(Box<pem::PairError>),
}

impl From<caddy::CaddyError> for SourceProblem {
    fn from(e: caddy::CaddyError) -> SourceProblem {
        SourceProblem::Caddy(Box::new(e))
    }
}

impl From<pem::PairError> for SourceProblem {
    fn from(e: pem::PairError) -> SourceProblem {
        SourceProblem::Pair(Box::new(e))
    }
}

impl SourceError {
    pub fn is_not_ready(&self) -> bool {
        matches!(self, SourceError::NotReady { .. })
    }

    fn new(origin: String, cause: impl Into<SourceProblem>) -> SourceError {
        let cause = cause.into();
        let not_ready = match &cause {
            SourceProblem::Missing => true,
            // Out of fds or memory for a moment (a flood on the metrics port): the
            // file is fine, and the next try, soon, can read it.
            SourceProblem::Io(e) => matches!(
                e.raw_os_error(),
                Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM)
            ),
            SourceProblem::Acme(e) => e.is_not_ready(),
            SourceProblem::Lineage(e) => e.is_not_ready(),
            SourceProblem::Caddy(e) => e.is_not_ready(),
            SourceProblem::Pair(e) => e.is_not_ready(),
        };
        if not_ready {
            SourceError::NotReady { origin, cause }
        } else {
            SourceError::Invalid { origin, cause }
        }
    }
}

impl Snapshot {
    /// Reads the source whole.
    pub fn read(spec: &SourceSpec) -> Result<Snapshot, SourceError> {
        Snapshot::read_for(spec, &Interest::everything())
    }

    /// Reads the source, keeping what `interest` asks for. Errors, and what counts as
    /// "not ready", are those of [`Snapshot::read`] then [`Snapshot::candidates`].
    pub fn read_for(spec: &SourceSpec, interest: &Interest) -> Result<Snapshot, SourceError> {
        match spec {
            SourceSpec::Acme(path) => {
                let file = open::regular(path, interest.max_size).map_err(|e| io_error(spec, e))?;
                if interest.streams() {
                    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
                    // A file that grows past the limit while read ends early for the
                    // stream: not ready, and the next read refuses it by its size.
                    let src = std::io::Read::take(&file, interest.max_size);
                    let content = match acme::read_streamed(src, interest, |b| hasher.update(b)) {
                        Ok(doc) => Some(AcmeContent::Streamed(doc)),
                        // Half-written, as every in-place rewrite leaves it for a while:
                        // not ready, without reading it again nor holding it whole.
                        Err(acme::Stop::Incomplete(reason)) => {
                            Some(AcmeContent::Incomplete(reason))
                        }
                        // Unusual or invalid: serde_json decides, on the whole file.
                        Err(acme::Stop::GiveUp) => None,
                    };
                    if let Some(content) = content {
                        return Ok(Snapshot::Acme(AcmeSnapshot {
                            path: path.clone(),
                            digest: hasher.digest128().to_le_bytes(),
                            content,
                        }));
                    }
                }
                // The stream may have read part of it: from the start, on the same
                // open file (the same version of it).
                let bytes = std::io::Seek::rewind(&mut &file)
                    .and_then(|()| open::read_all(file, interest.max_size))
                    .map_err(|e| io_error(spec, e))?;
                Ok(Snapshot::Acme(AcmeSnapshot {
                    path: path.clone(),
                    digest: xxhash_rust::xxh3::xxh3_128(&bytes).to_le_bytes(),
                    content: AcmeContent::Whole(bytes),
                }))
            }
            SourceSpec::Certbot(dir) => certbot::Lineage::read(dir, interest.max_size)
                .map(Snapshot::Certbot)
                .map_err(|e| io_error(spec, e)),
            SourceSpec::Caddy(dir) => caddy::Storage::read(dir, interest)
                .map(Snapshot::Caddy)
                .map_err(|e| SourceError::new(spec.to_string(), e)),
            SourceSpec::Pem { cert, key } => pem::Pair::read(cert, key)
                .map(Snapshot::Pem)
                .map_err(|e| SourceError::new(spec.to_string(), e)),
        }
    }

    /// xxh3-128 of this version of the source, computed while it was read.
    pub fn content_hash(&self) -> u128 {
        match self {
            Snapshot::Acme(a) => u128::from_le_bytes(a.digest),
            Snapshot::Certbot(l) => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&l.fullchain);
                h.update(&l.privkey);
                h.digest128()
            }
            Snapshot::Caddy(s) => s.digest,
            Snapshot::Pem(p) => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&p.cert);
                h.update(&[0]);
                h.update(&p.key);
                h.digest128()
            }
        }
    }

    /// Parses the snapshot into candidates that borrow from it.
    pub fn candidates(&self) -> Result<Candidates<'_>, SourceError> {
        match self {
            Snapshot::Acme(AcmeSnapshot {
                content: AcmeContent::Streamed(doc),
                ..
            }) => Ok(doc.candidates()),
            Snapshot::Acme(AcmeSnapshot {
                path,
                content: AcmeContent::Incomplete(e),
                ..
            }) => Err(SourceError::new(
                format!("acme.json {}", path.display()),
                acme::AcmeParseError::Incomplete(e.clone()),
            )),
            Snapshot::Acme(AcmeSnapshot {
                path,
                content: AcmeContent::Whole(bytes),
                ..
            }) => match acme::parse(bytes) {
                Ok(doc) => Ok(Candidates {
                    list: doc.entries,
                    skipped: doc.skipped,
                    leaves: None,
                }),
                Err(e) => Err(SourceError::new(format!("acme.json {}", path.display()), e)),
            },
            Snapshot::Certbot(lineage) => lineage
                .candidate()
                .map(|c| Candidates {
                    list: vec![c],
                    skipped: Vec::new(),
                    leaves: None,
                })
                .map_err(|e| {
                    SourceError::new(format!("certbot lineage {}", lineage.dir.display()), e)
                }),
            Snapshot::Caddy(storage) => Ok(storage.candidates()),
            Snapshot::Pem(pair) => pair
                .candidate()
                .map(|c| Candidates {
                    list: vec![c],
                    skipped: Vec::new(),
                    leaves: None,
                })
                .map_err(|e| {
                    SourceError::new(
                        SourceSpec::Pem {
                            cert: pair.cert_path.clone(),
                            key: pair.key_path.clone(),
                        }
                        .to_string(),
                        e,
                    )
                }),
        }
    }
}

/// Reads and parses the source for `interest`, waiting out a half-written file: each
/// `NotReady` sleeps the next delay of `backoff`; when it runs dry the last `NotReady`
/// is returned. `use_candidates` runs on the first version that parses, so a big file
/// is read once.
pub async fn read_when_ready_for<R>(
    spec: &SourceSpec,
    interest: &Interest,
    mut backoff: impl Iterator<Item = std::time::Duration>,
    use_candidates: impl FnOnce(&Candidates<'_>) -> R,
) -> Result<R, SourceError> {
    loop {
        let error = match Snapshot::read_for(spec, interest) {
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
    if e.kind() == std::io::ErrorKind::NotFound {
        SourceError::new(spec.to_string(), SourceProblem::Missing)
    } else {
        SourceError::new(spec.to_string(), SourceProblem::Io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle;

    fn fixture_spec(dir: &tempfile::TempDir) -> SourceSpec {
        let path = dir.path().join("acme.json");
        std::fs::write(&path, include_bytes!("../../fixtures/acme.json")).unwrap();
        SourceSpec::Acme(path)
    }

    #[test]
    fn a_streamed_read_selects_and_validates_as_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fixture_spec(&dir);
        let whole = Snapshot::read(&spec).unwrap();
        let all = whole.candidates().unwrap();
        let now = crate::leaf::unix_now();
        let domains = [
            "turn.example.test",
            "turn-alt.example.test",
            "www.example.test",
            "x.example.test",
            "nope.test",
        ];
        for domain in domains {
            for resolver in [None, Some("le"), Some("le-ec"), Some("other")] {
                let interest = Interest::targets([(Some(domain), resolver)]);
                let streamed = Snapshot::read_for(&spec, &interest).unwrap();
                assert!(matches!(
                    streamed,
                    Snapshot::Acme(AcmeSnapshot {
                        content: AcmeContent::Streamed(_),
                        ..
                    })
                ));
                assert_eq!(streamed.content_hash(), whole.content_hash());
                let some = streamed.candidates().unwrap();
                assert_eq!(format!("{:?}", some.list), format!("{:?}", all.list));
                assert_eq!(some.skipped, all.skipped);
                let kept = some
                    .list
                    .iter()
                    .filter(|c| !c.certificate.is_empty())
                    .count();
                assert!(
                    kept < some.list.len(),
                    "entries no target can select keep no key"
                );
                let (a, b) = (
                    bundle::select(&all.list, domain, resolver),
                    bundle::select(&some.list, domain, resolver),
                );
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        let (a, b) = (
                            bundle::validate(a, domain, now).unwrap(),
                            bundle::validate(b, domain, now).unwrap(),
                        );
                        assert_eq!(
                            (a.fullchain, &*a.key, a.origin),
                            (b.fullchain, &*b.key, b.origin)
                        );
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{domain} {resolver:?}: {a:?} / {b:?}"),
                }
            }
        }
    }

    #[test]
    fn a_streamed_read_lists_as_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fixture_spec(&dir);
        let whole = Snapshot::read(&spec).unwrap();
        let leaves = Snapshot::read_for(&spec, &Interest::leaves()).unwrap();
        let (whole, leaves) = (whole.candidates().unwrap(), leaves.candidates().unwrap());
        assert!(
            leaves.list.iter().all(|c| c.key.is_empty()),
            "list reads no key"
        );
        let show = |c: &Candidates<'_>| {
            let mut out = Vec::new();
            crate::list::print(&crate::list::rows(c), 0, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(&leaves), show(&whole));
        assert!(!show(&whole).contains("unusable"));
    }

    #[test]
    fn a_half_written_file_is_not_ready_in_serde_json_words() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fixture_spec(&dir);
        let SourceSpec::Acme(path) = &spec else {
            unreachable!()
        };
        let full = std::fs::read(path).unwrap();
        let interest = Interest::targets([(Some("turn.example.test"), None)]);
        for cut in [0, 1, 100, full.len() / 2, full.len() - 2] {
            std::fs::write(path, &full[..cut]).unwrap();
            let said = |s: Snapshot| s.candidates().map(|_| ()).unwrap_err().to_string();
            let (whole, streamed) = (
                Snapshot::read(&spec).unwrap(),
                Snapshot::read_for(&spec, &interest).unwrap(),
            );
            assert!(matches!(
                streamed,
                Snapshot::Acme(AcmeSnapshot {
                    content: AcmeContent::Incomplete(_),
                    ..
                })
            ));
            assert_eq!(said(streamed), said(whole), "cut at {cut}");
        }
        std::fs::remove_file(path).unwrap();
        let missing = |r: Result<Snapshot, SourceError>| r.map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            missing(Snapshot::read_for(&spec, &interest)),
            missing(Snapshot::read(&spec))
        );
    }
}
