//! Caddy's storage: `certificates/<issuer>/<name>/<name>.crt|.key|.json`.
//!
//! `<issuer>` is the CA's folder (`acme-v02.api.letsencrypt.org-directory`, `local`, or
//! host-port-path for another CA), `<name>` the site name with `*` spelled `wildcard_`.
//! The `.crt` is leaf then chain, the `.key` PEM (SEC1 EC by default), the `.json` lists
//! the SANs. Several issuers may hold the same name; `select` ranks them as it does
//! acme.json's resolvers, the issuer folder standing for the resolver.
//!
//! The storage belongs to another program and certsync reads it as root, so nothing in
//! it is trusted as a path: folders are opened relative to their parent with
//! `O_NOFOLLOW`, a symlinked issuer or name folder (or file) is skipped instead of
//! followed out of the storage, and a folder name that is not one plain component is
//! skipped. Recent Caddy replaces each file by temp + rename, older Caddy rewrites it
//! in place; a pair caught mid-renewal (empty, cut short, or a key that does not match
//! the certificate yet) is "not ready" when a target could select it.

use std::borrow::Cow;
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use zeroize::Zeroizing;

use super::pem::{check_pair, read_regular, PairError};
use super::{Candidate, Candidates, Interest, Skipped};
use crate::leaf::Encoding;

/// One `<issuer>/<name>` folder that held a certificate.
struct Entry {
    issuer: String,
    /// The site name: the folder's name, `wildcard_` turned back into `*`.
    main: String,
    sans: Vec<String>,
    crt: String,
    /// Empty when no target could select the entry: keys are read only when needed.
    key: Zeroizing<String>,
}

/// The storage at one moment.
pub struct Storage {
    pub dir: PathBuf,
    entries: Vec<Entry>,
    skipped: Vec<Skipped>,
    /// xxh3-128 of every name and file read, in order.
    pub digest: u128,
}

/// Why the storage cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaddyError {
    #[error("{} does not exist (yet)", .0.display())]
    Missing(PathBuf),
    #[error("cannot list {}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// A certificate some target could select is mid-write (or its key unreadable).
    #[error("issuer {issuer:?}, certificate {name:?} is mid-write")]
    Unsettled {
        issuer: String,
        name: String,
        #[source]
        cause: PairError,
    },
}

impl CaddyError {
    pub fn is_not_ready(&self) -> bool {
        match self {
            CaddyError::Missing(_) => true,
            CaddyError::Unsettled { cause, .. } => cause.is_not_ready(),
            CaddyError::List { .. } => false,
        }
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

impl Storage {
    /// Lists `dir/certificates/*/*/` and reads what `interest` asks for: every `.crt`
    /// and `.json`, and the `.key` of the entries a target could select.
    pub fn read(dir: &Path, interest: &Interest) -> Result<Storage, CaddyError> {
        let root = dir.join("certificates");
        let list_error = |path: &Path, source| match source {
            nix::Error::ENOENT => CaddyError::Missing(path.to_owned()),
            source => CaddyError::List {
                path: path.to_owned(),
                source,
            },
        };
        // The storage folder itself is the user's choice and may be a symlink; what
        // is inside is Caddy's, `certificates` included.
        let storage_dir = Dir::open(dir, DIR_FLAGS.difference(OFlag::O_NOFOLLOW), Mode::empty())
            .map_err(|e| list_error(dir, e))?;
        let mut top = Dir::openat(
            Some(storage_dir.as_raw_fd()),
            "certificates",
            DIR_FLAGS,
            Mode::empty(),
        )
        .map_err(|e| list_error(&root, e))?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut storage = Storage {
            dir: dir.to_owned(),
            entries: Vec::new(),
            skipped: Vec::new(),
            digest: 0,
        };
        let top_fd = top.as_raw_fd();
        for issuer in sorted_names(&mut top, &root)? {
            let issuer_path = root.join(&issuer);
            let Some(mut issuer_dir) = open_folder(top_fd, &issuer, &mut storage, None)? else {
                continue;
            };
            let issuer_fd = issuer_dir.as_raw_fd();
            for name in sorted_names(&mut issuer_dir, &issuer_path)? {
                let Some(site) = open_folder(issuer_fd, &name, &mut storage, Some(&issuer))? else {
                    continue;
                };
                storage.read_entry(site, &issuer, &name, &issuer_path, interest, &mut hasher)?;
            }
        }
        storage.digest = hasher.digest128();
        Ok(storage)
    }

    fn read_entry(
        &mut self,
        site: Dir,
        issuer: &str,
        name: &str,
        issuer_path: &Path,
        interest: &Interest,
        hasher: &mut xxhash_rust::xxh3::Xxh3,
    ) -> Result<(), CaddyError> {
        let folder = issuer_path.join(name);
        let fd = site.as_raw_fd();
        let read = |ext: &str| read_at(fd, &folder, &format!("{name}.{ext}"));
        let main = match name.strip_prefix("wildcard_") {
            Some(rest) => format!("*{rest}"),
            None => name.to_owned(),
        };
        let crt = match read("crt") {
            Ok(b) => b,
            Err(PairError::Missing(_)) => {
                return self.skip(Some(issuer), &main, "the folder holds no .crt");
            }
            Err(PairError::NotRegular(_)) => {
                return self.skip(Some(issuer), &main, "its .crt is not a regular file");
            }
            Err(PairError::TooLarge(_)) => {
                return self.skip(Some(issuer), &main, "its .crt is too large");
            }
            Err(_) => return self.skip(Some(issuer), &main, "its .crt cannot be read"),
        };
        let sans = match read("json") {
            Ok(json) => sans_from_json(&json),
            Err(_) => None,
        }
        .or_else(|| leaf_names(&crt))
        .unwrap_or_default()
        .into_iter()
        .filter(|s| *s != main)
        .collect::<Vec<_>>();
        let wanted = {
            let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
            interest.wants_material(Some(issuer), &main, &sans, None)
        };
        let key = if wanted {
            let key = Zeroizing::new(read("key").map_err(|e| unsettled(issuer, name, e))?);
            if let Err(problem) = check_pair(&crt, &key) {
                if problem.is_not_ready() {
                    return Err(unsettled(issuer, name, problem.into()));
                }
            }
            key
        } else {
            Zeroizing::new(Vec::new())
        };
        let Ok(crt) = String::from_utf8(crt) else {
            return self.skip(Some(issuer), &main, "its .crt is not text");
        };
        let Ok(key) = String::from_utf8(key.to_vec()).map(Zeroizing::new) else {
            return self.skip(Some(issuer), &main, "its .key is not text");
        };
        for part in [issuer, name, &crt, &key] {
            hasher.update(part.as_bytes());
            hasher.update(&[0]);
        }
        hasher.update(sans.join(",").as_bytes());
        self.entries.push(Entry {
            issuer: issuer.to_owned(),
            main,
            sans,
            crt,
            key,
        });
        Ok(())
    }

    fn skip(
        &mut self,
        issuer: Option<&str>,
        main: &str,
        reason: &'static str,
    ) -> Result<(), CaddyError> {
        self.skipped.push(Skipped {
            resolver: issuer.map(str::to_owned),
            main: main.to_owned(),
            reason,
        });
        Ok(())
    }

    pub fn candidates(&self) -> Candidates<'_> {
        Candidates {
            list: self
                .entries
                .iter()
                .map(|e| Candidate {
                    resolver: Some(Cow::Borrowed(&e.issuer)),
                    main: Cow::Borrowed(&e.main),
                    sans: e.sans.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
                    certificate: Cow::Borrowed(&e.crt),
                    key: Cow::Borrowed(&e.key),
                    encoding: Encoding::Pem,
                    digest: None,
                })
                .collect(),
            skipped: self.skipped.clone(),
            leaves: None,
        }
    }
}

fn unsettled(issuer: &str, name: &str, cause: PairError) -> CaddyError {
    CaddyError::Unsettled {
        issuer: issuer.to_owned(),
        name: name.to_owned(),
        cause,
    }
}

/// The entries of a folder that are safe to use as one path component, sorted.
fn sorted_names(dir: &mut Dir, path: &Path) -> Result<Vec<String>, CaddyError> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|source| CaddyError::List {
            path: path.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push(safe_name(name));
    }
    let mut names: Vec<String> = names.into_iter().flatten().collect();
    names.sort();
    Ok(names)
}

/// A folder name as certsync may use it: UTF-8, printable, no `/`, not `.` or `..`
/// (readdir never returns a `/`, but the rule does not rest on that). Caddy's own
/// names are lower-case DNS names, IP addresses and `wildcard_`; anything else is
/// passed over.
fn safe_name(name: &CStr) -> Option<String> {
    let name = name.to_str().ok()?;
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c == '/' || c.is_control() || c.is_whitespace());
    ok.then(|| name.to_owned())
}

/// Opens a sub-folder without following a symlink; a symlink or a plain file is
/// recorded as skipped, a folder removed since the listing is passed over.
fn open_folder(
    parent: i32,
    name: &str,
    storage: &mut Storage,
    issuer: Option<&str>,
) -> Result<Option<Dir>, CaddyError> {
    match Dir::openat(Some(parent), name, DIR_FLAGS, Mode::empty()) {
        Ok(d) => Ok(Some(d)),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(nix::Error::ELOOP | nix::Error::ENOTDIR) => {
            let (issuer, main) = match issuer {
                Some(i) => (Some(i), name),
                None => (Some(name), "-"),
            };
            storage.skip(issuer, main, "not a folder (a symlink is not followed)")?;
            Ok(None)
        }
        Err(source) => Err(CaddyError::List {
            path: storage.dir.join("certificates").join(name),
            source,
        }),
    }
}

fn read_at(dir: i32, folder: &Path, file: &str) -> Result<Vec<u8>, PairError> {
    let path = folder.join(file);
    let fd = match nix::fcntl::openat(Some(dir), file, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        // O_NOFOLLOW met a symlink.
        Err(nix::Error::ELOOP) => return Err(PairError::NotRegular(path)),
        Err(e) => return Err(super::pem::io_error(&path, std::io::Error::from(e))),
    };
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    read_regular(file, &path)
}

/// The `sans` of Caddy's `.json` metadata, if it has any.
fn sans_from_json(json: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Meta {
        sans: Vec<String>,
    }
    serde_json::from_slice::<Meta>(json)
        .ok()
        .map(|m| m.sans)
        .filter(|s| !s.is_empty())
}

fn leaf_names(crt: &[u8]) -> Option<Vec<String>> {
    let block = ::pem::parse(crt).ok()?;
    crate::leaf::Leaf::from_der(block.contents())
        .ok()
        .map(|l| l.names)
}
