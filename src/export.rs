//! `--all` (`[[export]]`): every certificate of the source, each in a folder of its
//! own, `OUT_DIR/<name>/`, with a target's file names, formats, owner and modes.
//!
//! - **Names.** `<name>` is the main domain, lower-cased, without a trailing dot; a
//!   wildcard `*.example.com` becomes `_wildcard.example.com` (a `*` in a path breaks
//!   shells and Windows shares). Anything else must be one safe path component:
//!   letters, digits, `-`, `_` and `.`, not starting with `.` or `-`, no `..`, at most
//!   253 bytes. An entry whose name fails is refused and counted as an error; it
//!   never becomes a path (contract rule 5).
//! - **Choice.** Entries with the same folder (one domain under two resolvers, or an
//!   old and a renewed entry) are tried latest not-after first, ties broken by
//!   resolver name then serial, so file order never decides. The first that passes
//!   validation is written.
//! - **Isolation.** Each folder is validated and written on its own; a bad one is
//!   reported and left as it was. Only one decoded certificate and key are in memory
//!   at a time.
//! - **Prune.** A folder certsync creates gets a [`MARKER`] file. `--prune` removes
//!   only such folders (real folders, never through a symlink), only when they hold
//!   nothing but the files certsync writes, and never OUT_DIR itself.

use std::cmp::Reverse;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::bundle::{self, Bundle};
use crate::config::{ConfigError, Output};
use crate::leaf::{self, Leaf};
use crate::reload::ReloadSpec;
use crate::source::Candidate;

/// The file that marks a folder as certsync's own, so `--prune` may remove it.
pub const MARKER: &str = ".certsync-export";

/// One `--all` export: where, which certificates, in which files, and how to reload.
#[derive(Debug, Clone)]
pub struct Export {
    /// `export /srv/certs`: names the export as a whole in logs and /healthz.
    pub label: String,
    /// `out.dir` is OUT_DIR; every other field applies inside each folder.
    pub out: Output,
    pub resolver: Option<String>,
    pub filter: Filter,
    pub prune: bool,
    pub reload: Option<ReloadSpec>,
    /// What each folder held after the last pass, shared by the passes of one config.
    pub memo: std::sync::Arc<Memo>,
}

/// Per folder, the digests of the entries it was written from and what that gave. A
/// change-triggered pass of the daemon trusts it for folders whose entries did not
/// change, so a renewal among thousands of certificates validates and compares one
/// folder, not all of them, and the reader does not even keep the certificates and
/// keys it already knows ([`crate::source::Interest::with_exports`]). Every other
/// pass (start, resync, SIGHUP, `--once`) checks every folder on disk again,
/// repairing owners and modes and catching expiry.
#[derive(Debug, Default)]
pub struct Memo {
    folders: std::sync::Mutex<std::collections::HashMap<String, MemoFolder>>,
    /// Every folder's entry digests in one set, built again only after a change.
    known: std::sync::Mutex<Option<std::sync::Arc<Known>>>,
}

/// Entry digests. They are xxh3 output already: their low bits are the hash.
pub type Known = std::collections::HashSet<u128, std::hash::BuildHasherDefault<DigestHasher>>;

/// Hashes a digest by taking its low 64 bits, not by hashing it again.
#[derive(Debug, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used for digests; anything else still hashes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct MemoFolder {
    /// [`folder_digest`] of `entries`.
    digest: u128,
    /// [`entry_digest`] of each entry the folder was chosen from, sorted.
    entries: Vec<u128>,
    remembered: Remembered,
}

impl Memo {
    /// The next pass looks at this folder again, whatever its entries.
    pub fn forget(&self, folder: &str) {
        self.folders
            .lock()
            .expect("export memo lock")
            .remove(folder);
        self.changed();
    }

    /// The digest of every entry some folder was last written from.
    pub fn known_entries(&self) -> std::sync::Arc<Known> {
        let mut known = self.known.lock().expect("export memo lock");
        known
            .get_or_insert_with(|| {
                let folders = self.folders.lock().expect("export memo lock");
                std::sync::Arc::new(
                    folders
                        .values()
                        .flat_map(|f| f.entries.iter().copied())
                        .collect(),
                )
            })
            .clone()
    }

    fn changed(&self) {
        *self.known.lock().expect("export memo lock") = None;
    }
}

/// What a folder's last sync found (no key).
#[derive(Debug, Clone)]
pub struct Remembered {
    leaf: std::sync::Arc<Leaf>,
    leaf_der: std::sync::Arc<[u8]>,
    origin: std::sync::Arc<str>,
    domain: std::sync::Arc<str>,
}

impl Export {
    /// Whether this export takes an entry: in the resolver's scope and through the filter.
    pub fn takes(&self, resolver: Option<&str>, main: &str, sans: &[&str]) -> bool {
        (self.resolver.is_none() || self.resolver.as_deref() == resolver)
            && self
                .filter
                .takes(std::iter::once(main).chain(sans.iter().copied()))
    }
}

/// `--include` / `--exclude`: globs matched, case-insensitively, against every name of
/// a certificate (main and SANs). A certificate is taken when some name matches an
/// include (or none is given) and no name matches an exclude. `*` matches any run of
/// characters, dots included: `*.example.com` matches `a.example.com` and
/// `a.b.example.com`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, ConfigError> {
        Ok(Filter {
            include: globs("include", include)?,
            exclude: globs("exclude", exclude)?,
        })
    }

    pub fn takes<'n>(&self, names: impl Iterator<Item = &'n str> + Clone) -> bool {
        let any = |set: &GlobSet| names.clone().any(|n| set.is_match(n.trim_end_matches('.')));
        self.include.as_ref().is_none_or(any) && !self.exclude.as_ref().is_some_and(any)
    }
}

fn globs(key: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, ConfigError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p.trim_end_matches('.'))
            .case_insensitive(true)
            .build()
            .map_err(|source| ConfigError::Glob {
                key,
                pattern: p.clone(),
                source,
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|source| ConfigError::Glob {
        key,
        pattern: patterns.join(" "),
        source,
    })
}

/// A main domain that cannot be a folder name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("main domain {0:?} is not one safe folder name (letters, digits, '-', '_', '.'; not first '.' or '-'; no '..'): refused")]
pub struct UnsafeName(pub String);

/// The folder of a certificate whose main domain is `main`.
pub fn folder_name(main: &str) -> Result<String, UnsafeName> {
    let refused = || UnsafeName(main.to_owned());
    let lower = main.strip_suffix('.').unwrap_or(main).to_ascii_lowercase();
    let name = match lower.strip_prefix("*.") {
        Some(rest) => format!("_wildcard.{rest}"),
        // A literal `_wildcard.` main would share the folder of a real wildcard.
        None if lower.starts_with("_wildcard.") => return Err(refused()),
        None => lower,
    };
    let safe_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ok = safe_chars
        && !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['.', '-'])
        && !name.contains("..")
        && name != "_wildcard.";
    if ok {
        Ok(name)
    } else {
        Err(refused())
    }
}

/// Whether `name` is one [`folder_name`] can give.
fn could_be_ours(name: &str) -> bool {
    let main = match name.strip_prefix("_wildcard.") {
        Some(rest) => format!("*.{rest}"),
        None => name.to_owned(),
    };
    folder_name(&main).is_ok_and(|n| n == name)
}

/// The entries of one folder, best first.
#[derive(Debug)]
pub struct Folder<'c, 'a> {
    pub name: String,
    /// Ordered for [`sync_folder`] (latest not-after first) unless `known`.
    pub entries: Vec<&'c Candidate<'a>>,
    /// [`entry_digest`] of each entry, sorted.
    digests: Vec<u128>,
    /// The folder was last written from exactly these entries, and this pass may
    /// trust that ([`Memo`]): its files are not looked at.
    known: bool,
}

/// What an export does with a source's candidates: the folders to write, in name
/// order, and the entries refused for their name (with the metrics label for each).
#[derive(Debug, Default)]
pub struct Plan<'c, 'a> {
    pub folders: Vec<Folder<'c, 'a>>,
    pub refused: Vec<(String, UnsafeName)>,
    /// Some folder must be written but the reader dropped the certificate and key of
    /// one of its entries (known, but now beside a new one): read the source again,
    /// keeping them ([`crate::source::Interest::keeping_every_exported`]).
    pub lacks_material: bool,
}

/// xxh3-128 of one entry as the source stores it: resolver, main, certificate and
/// key, each length-prefixed. The same whether the reader streamed or parsed.
pub fn entry_digest(resolver: Option<&str>, main: &str, certificate: &[u8], key: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for field in [
        resolver.unwrap_or("").as_bytes(),
        main.as_bytes(),
        certificate,
        key,
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.digest128()
}

/// A folder's digest: its entries' digests, sorted, so file order does not matter.
fn folder_digest(sorted: &[u128]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for d in sorted {
        h.update(&d.to_le_bytes());
    }
    h.digest128()
}

/// Groups the candidates this export takes by folder. A folder whose entries the
/// [`Memo`] knows is left as it is, unless `recheck`; the others are ordered for
/// [`sync_folder`] (latest not-after first; only groups of two or more decode leaves).
pub fn plan<'c, 'a>(
    export: &Export,
    candidates: &'c [Candidate<'a>],
    recheck: bool,
) -> Plan<'c, 'a> {
    let mut groups: std::collections::BTreeMap<String, Vec<&'c Candidate<'a>>> = Default::default();
    let mut refused = Vec::new();
    for c in candidates {
        let sans: Vec<&str> = c.sans.iter().map(|s| &**s).collect();
        if !export.takes(c.resolver.as_deref(), &c.main, &sans) {
            continue;
        }
        match folder_name(&c.main) {
            Ok(name) => groups.entry(name).or_default().push(c),
            // A hostile name must not make a huge label either.
            Err(e) => refused.push((c.main.escape_default().take(100).collect(), e)),
        }
    }
    let memo = export.memo.folders.lock().expect("export memo lock");
    let mut lacks_material = false;
    let folders = groups
        .into_iter()
        .map(|(name, mut entries)| {
            let mut digests: Vec<u128> = entries
                .iter()
                .map(|c| {
                    c.digest.unwrap_or_else(|| {
                        entry_digest(
                            c.resolver.as_deref(),
                            &c.main,
                            c.certificate.as_bytes(),
                            c.key.as_bytes(),
                        )
                    })
                })
                .collect();
            digests.sort_unstable();
            let known = !recheck
                && memo
                    .get(&name)
                    .is_some_and(|m| m.digest == folder_digest(&digests));
            if known {
                return Folder {
                    name,
                    entries,
                    digests,
                    known,
                };
            }
            // A kept entry is never empty (empty ones are skipped by the reader).
            lacks_material |= entries.iter().any(|c| c.certificate.is_empty());
            if entries.len() > 1 {
                let mut scratch = (Vec::new(), Vec::new());
                let mut keyed: Vec<_> = entries
                    .iter()
                    .map(|c| {
                        let leaf = decoded_leaf(c, &mut scratch);
                        let (not_after, serial) = leaf
                            .map(|l| (l.not_after, l.serial))
                            .unwrap_or((i64::MIN, String::new()));
                        (
                            (
                                Reverse(not_after),
                                c.resolver.as_deref().unwrap_or("").to_owned(),
                                serial,
                            ),
                            *c,
                        )
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                entries = keyed.into_iter().map(|(_, c)| c).collect();
            }
            Folder {
                name,
                entries,
                digests,
                known,
            }
        })
        .collect();
    Plan {
        folders,
        refused,
        lacks_material,
    }
}

fn decoded_leaf(c: &Candidate<'_>, (scratch, der): &mut (Vec<u8>, Vec<u8>)) -> Option<Leaf> {
    der.clear();
    leaf::stored_leaf_der(&c.certificate, c.encoding, scratch, der).ok()?;
    Leaf::from_der(der).ok()
}

/// The first entry of `folder` that passes validation, for its own main domain. When
/// none does, the error of the best one.
pub fn choose(folder: &Folder<'_, '_>, now: i64) -> Result<Bundle, crate::bundle::ValidateError> {
    let mut first_error = None;
    for c in &folder.entries {
        match bundle::validate(c, &c.main, now) {
            Ok(b) => {
                if let Some(e) = &first_error {
                    tracing::warn!(target = %folder.name, "a newer entry is refused, an older one is written: {}", crate::error::Chain(e));
                }
                return Ok(b);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("a folder has at least one entry"))
}

/// Why a folder cannot be written to.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(transparent)]
    Name(#[from] UnsafeName),
    #[error("{} is a symbolic link: not followed, not written through", path.display())]
    Symlink { path: PathBuf },
    #[error("{} exists and is not a folder", path.display())]
    NotAFolder { path: PathBuf },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> FolderError + 'p {
    move |source| FolderError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Makes `OUT_DIR/<name>` ready for the sink: an existing real folder is used as it is;
/// a missing one is created (0755) with the marker inside. A symlink or a file at that
/// name is refused. With `dry_run`, nothing is created.
pub fn prepare_folder(out_dir: &Path, name: &str, dry_run: bool) -> Result<PathBuf, FolderError> {
    let path = out_dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => return Err(FolderError::Symlink { path }),
        Ok(m) if !m.is_dir() => return Err(FolderError::NotAFolder { path }),
        Ok(_) => return Ok(path),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect", &path)(e)),
    }
    if dry_run {
        return Ok(path);
    }
    if !out_dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(out_dir)
            .map_err(io("create the folder", out_dir))?;
    }
    // mkdir never follows a link at its final name: a link planted since the check
    // above makes it fail with EEXIST.
    match fs::DirBuilder::new().mode(0o755).create(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return prepare_folder(out_dir, name, dry_run)
        }
        Err(e) => return Err(io("create the folder", &path)(e)),
    }
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io("open the folder", &path))?;
    // The umask may have narrowed 0755; readers need to traverse it.
    dir.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(io("set the mode of", &path))?;
    let marker = path.join(MARKER);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&marker)
        .map_err(io("create the marker", &marker))?;
    Ok(path)
}

/// What `--prune` did.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<String>,
    /// Folders of certsync's that were kept because they hold other files.
    pub kept: Vec<String>,
}

/// Removes the folders certsync created in `out.dir` whose name is not in `keep`.
/// Only real folders holding a regular-file marker and nothing but the names certsync
/// writes there are removed; anything else in OUT_DIR is never touched.
pub fn prune(
    out: &Output,
    keep: &std::collections::HashSet<&str>,
    dry_run: bool,
) -> Result<Pruned, FolderError> {
    let mut pruned = Pruned::default();
    let entries = match fs::read_dir(&out.dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(pruned),
        Err(e) => return Err(io("list", &out.dir)(e)),
    };
    let ours: Vec<&str> = [&out.cert_file, &out.key_file]
        .into_iter()
        .map(String::as_str)
        .chain(out.leaf_file.as_deref())
        .chain(out.chain_file.as_deref())
        .chain(out.bundle_file.as_deref())
        .chain(out.pkcs12.as_ref().map(|p| p.file.as_str()))
        .collect();
    for entry in entries {
        let entry = entry.map_err(io("list", &out.dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if keep.contains(name.as_str()) || !could_be_ours(&name) {
            continue;
        }
        let path = entry.path();
        // file_type() of a directory entry is lstat's: a link is never a folder here.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let marker = path.join(MARKER);
        if !fs::symlink_metadata(&marker).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        let contents: Vec<String> = fs::read_dir(&path)
            .map_err(io("list", &path))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        let certsyncs = |f: &str| {
            f == MARKER
                || f == crate::sink::LOCK_NAME
                || ours.contains(&f)
                || f.starts_with(".certsync-reload-pending.")
                || (f.starts_with('.') && f.contains(".certsync-") && f.ends_with(".tmp"))
        };
        if contents.iter().any(|f| !certsyncs(f)) {
            pruned.kept.push(name);
            continue;
        }
        if !dry_run {
            for f in contents.iter().filter(|f| f.as_str() != MARKER) {
                let p = path.join(f);
                fs::remove_file(&p).map_err(io("remove", &p))?;
            }
            fs::remove_file(&marker).map_err(io("remove", &marker))?;
            fs::remove_dir(&path).map_err(io("remove", &path))?;
        }
        pruned.removed.push(name);
    }
    Ok(pruned)
}

/// What a pass did for one export.
#[derive(Debug)]
pub struct ExportReport {
    pub label: String,
    /// One per folder, in name order, then one per refused entry (labelled by its
    /// escaped main domain).
    pub folders: Vec<FolderReport>,
    /// A problem of the export as a whole (OUT_DIR cannot be listed for `--prune`).
    pub problem: Option<String>,
    pub pruned: Pruned,
    /// Reloads made for it in this pass.
    pub reloads: Vec<crate::pipeline::ReloadAttempt>,
}

impl ExportReport {
    /// Whether every folder is in sync, nothing failed, and every reload succeeded.
    pub fn all_ok(&self) -> bool {
        self.problem.is_none()
            && self.folders.iter().all(|f| f.synced.is_ok())
            && self.reloads.iter().all(|r| r.result.is_ok())
    }
}

/// What a pass did for one folder of an export.
#[derive(Debug)]
pub struct FolderReport {
    /// The folder name: the metrics `target` label.
    pub label: String,
    pub dir: PathBuf,
    pub synced: Result<crate::pipeline::Synced, crate::pipeline::TargetError>,
    /// Taken from the [`Memo`]: its files were not looked at in this pass.
    pub remembered: bool,
}

/// Brings every folder of a [`plan`] in line with its entries, one certificate at a
/// time, then prunes if asked.
pub fn sync(export: &Export, plan: Plan<'_, '_>, now: i64, dry_run: bool) -> ExportReport {
    let mut folders = Vec::with_capacity(plan.folders.len() + plan.refused.len());
    let mut memo = export.memo.folders.lock().expect("export memo lock");
    let planned: std::collections::HashSet<&str> =
        plan.folders.iter().map(|f| f.name.as_str()).collect();
    let before = memo.len();
    memo.retain(|name, _| planned.contains(name.as_str()));
    let mut changed = memo.len() != before;
    for folder in &plan.folders {
        let dir = export.out.dir.join(&folder.name);
        if let Some(m) = memo.get(&folder.name).filter(|_| folder.known) {
            let r = &m.remembered;
            folders.push(FolderReport {
                label: folder.name.clone(),
                dir,
                synced: Ok(crate::pipeline::Synced {
                    leaf: r.leaf.clone(),
                    leaf_der: r.leaf_der.clone(),
                    origin: r.origin.clone(),
                    domain: r.domain.clone(),
                    written: Vec::new(),
                    repaired: Vec::new(),
                }),
                remembered: true,
            });
            continue;
        }
        let synced = sync_folder(export, folder, now, dry_run);
        match &synced {
            Ok(s) if !dry_run => {
                let remembered = Remembered {
                    leaf: s.leaf.clone(),
                    leaf_der: s.leaf_der.clone(),
                    origin: s.origin.clone(),
                    domain: s.domain.clone(),
                };
                let entry = MemoFolder {
                    digest: folder_digest(&folder.digests),
                    entries: folder.digests.clone(),
                    remembered,
                };
                memo.insert(folder.name.clone(), entry);
                changed = true;
            }
            _ => {
                changed |= memo.remove(&folder.name).is_some();
            }
        }
        folders.push(FolderReport {
            label: folder.name.clone(),
            dir,
            synced,
            remembered: false,
        });
    }
    drop(memo);
    if changed {
        export.memo.changed();
    }
    for (label, e) in plan.refused {
        folders.push(FolderReport {
            label,
            dir: export.out.dir.clone(),
            synced: Err(FolderError::Name(e).into()),
            remembered: false,
        });
    }
    let mut report = ExportReport {
        label: export.label.clone(),
        folders,
        problem: None,
        pruned: Pruned::default(),
        reloads: Vec::new(),
    };
    if export.prune {
        match prune(&export.out, &planned, dry_run) {
            Ok(p) => report.pruned = p,
            Err(e) => report.problem = Some(format!("prune: {}", crate::error::Chain(&e))),
        }
    }
    report
}

fn sync_folder(
    export: &Export,
    folder: &Folder<'_, '_>,
    now: i64,
    dry_run: bool,
) -> Result<crate::pipeline::Synced, crate::pipeline::TargetError> {
    let bundle = choose(folder, now)?;
    let dir = prepare_folder(&export.out.dir, &folder.name, dry_run)?;
    let out = Output {
        dir,
        ..export.out.clone()
    };
    let (written, repaired) = crate::pipeline::write_files(&out, &bundle, &folder.name, dry_run)?;
    let domain = folder.entries[0].main.to_string();
    let Bundle {
        leaf,
        leaf_der,
        origin,
        ..
    } = bundle;
    Ok(crate::pipeline::Synced {
        leaf: leaf.into(),
        leaf_der: leaf_der.into(),
        origin: origin.into(),
        domain: domain.into(),
        written,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_one_safe_component() {
        assert_eq!(
            folder_name("Turn.Example.com.").unwrap(),
            "turn.example.com"
        );
        assert_eq!(
            folder_name("*.example.com").unwrap(),
            "_wildcard.example.com"
        );
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a\0b",
            "a\nb",
            "-rf",
            ".hidden",
            "a..b",
            "*.",
            "a.*.b",
            "_wildcard.example.com",
            "ex ample.com",
            "é.example.com",
        ] {
            assert!(folder_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(folder_name(&"a".repeat(254)).is_err());
    }

    #[test]
    fn include_and_exclude_match_main_and_sans() {
        let f = Filter::new(
            &["*.example.com".into()],
            &["*.internal.example.com".into()],
        )
        .unwrap();
        assert!(f.takes(["a.example.com"].into_iter()));
        assert!(f.takes(["A.Example.COM."].into_iter()));
        assert!(f.takes(["other.test", "www.example.com"].into_iter()));
        assert!(!f.takes(["example.org"].into_iter()));
        assert!(!f.takes(["a.example.com", "db.internal.example.com"].into_iter()));
        let all = Filter::new(&[], &[]).unwrap();
        assert!(all.takes(["anything.test"].into_iter()));
        assert!(Filter::new(&["a[".into()], &[]).is_err());
    }
}
