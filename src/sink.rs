//! Putting files on disk so that a reader never sees a torn or empty one.
//!
//! Each changed file is written to a temporary file in the same folder (created with
//! `O_EXCL | O_NOFOLLOW`, so nothing planted there is followed or reused), which gets its
//! owner and mode before any content, then is fsynced and renamed over the old name;
//! the folder is fsynced last. Every file of a target is staged before the first
//! rename, so a full disk or a failed chown leaves the old set complete rather than a
//! new certificate next to an old key.
//!
//! Unchanged content is never rewritten (no needless reload); a wrong owner or mode on
//! it is repaired in place.
//!
//! One writer per folder: [`apply`] holds an advisory lock (`flock` on `.certsync.lock`
//! in the folder) from the comparison to the last rename, so a cron `--once` beside the
//! daemon, or a sidecar beside the host, cannot interleave renames and leave one's
//! certificate beside the other's key. A rename that fails half-way (a bind-mounted or
//! immutable file) is undone: each file replaced is first kept as a hard link, and put
//! back if a later one cannot be replaced.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::unistd::{Gid, Group, Uid, User};

/// One file a target wants in its folder.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// A plain file name (checked by `config`: no `/`, no `..`).
    pub name: &'a str,
    pub content: &'a [u8],
    pub mode: u32,
}

/// `USER[:GROUP]` as typed; names are looked up at write time, so a user created
/// after certsync started is found, and an unknown one fails the target, not the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSpec {
    pub user: String,
    pub group: Option<String>,
}

impl std::str::FromStr for OwnerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(format!("{s:?} is not USER[:GROUP]"));
        }
        // chown(2) reads the id -1 (4294967295) as "leave it as it is": such an owner
        // would never be set, and every pass would "repair" it again.
        for part in std::iter::once(user).chain(group) {
            let numeric = part.strip_prefix('-').unwrap_or(part);
            if !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()) {
                match part.parse::<u32>() {
                    Ok(n) if n != u32::MAX => {}
                    _ => return Err(format!("{part:?} is not a usable user or group id")),
                }
            }
        }
        Ok(OwnerSpec {
            user: user.to_owned(),
            group: group.map(str::to_owned),
        })
    }
}

/// Resolved numeric owner; `None` leaves that id as the process creates it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

impl OwnerSpec {
    /// Looks the names up. `USER` alone sets only the user, as chown(1) does.
    pub fn resolve(&self) -> Result<Owner, SinkError> {
        let uid = match self.user.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(&self.user)
                    .ok()
                    .flatten()
                    .ok_or_else(|| SinkError::Owner(format!("unknown user {:?}", self.user)))?
                    .uid
            }
        };
        let gid = match &self.group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => Gid::from_raw(n),
                Err(_) => {
                    Group::from_name(g)
                        .ok()
                        .flatten()
                        .ok_or_else(|| SinkError::Owner(format!("unknown group {g:?}")))?
                        .gid
                }
            }),
        };
        Ok(Owner {
            uid: Some(uid),
            gid,
        })
    }
}

/// Why files could not be put in place. The files already there are untouched.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Owner(String),
    /// Another process holds the folder's lock past the wait.
    #[error("another certsync writes {}: its lock {} is held", dir.display(), lock.display())]
    Busy { dir: PathBuf, lock: PathBuf },
    /// A file could not be replaced, and those already replaced were put back.
    #[error("the files in {} were left as they were", dir.display())]
    RolledBack {
        dir: PathBuf,
        #[source]
        cause: Box<SinkError>,
    },
    /// A file could not be replaced, and putting back one already replaced failed too.
    #[error("cannot put back {} after a failed replacement ({cause})", path.display())]
    RollbackFailed {
        path: PathBuf,
        cause: Box<SinkError>,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> SinkError + 'p {
    move |source| SinkError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What will happen to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Missing or different: written anew.
    Write,
    /// Same content, wrong owner or mode: fixed in place.
    Repair,
    /// Nothing to do.
    Keep,
}

/// The comparison of wanted files with what is on disk.
#[derive(Debug)]
pub struct Plan<'a> {
    pub dir: PathBuf,
    pub owner: Owner,
    pub files: Vec<(Wanted<'a>, Action)>,
}

impl Plan<'_> {
    /// Whether any content changes (and so a reload is due).
    pub fn changes_content(&self) -> bool {
        self.files.iter().any(|(_, a)| *a == Action::Write)
    }

    pub fn names(&self, action: Action) -> Vec<&str> {
        self.files
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(w, _)| w.name)
            .collect()
    }
}

/// Compares `wanted` with the folder's current files. Reads, never writes.
pub fn plan<'a>(dir: &Path, wanted: &[Wanted<'a>], owner: Owner) -> Result<Plan<'a>, SinkError> {
    let files = wanted
        .iter()
        .map(|w| Ok((*w, action_for(&dir.join(w.name), w, owner)?)))
        .collect::<Result<_, SinkError>>()?;
    Ok(Plan {
        dir: dir.to_owned(),
        owner,
        files,
    })
}

pub(crate) fn action_for(
    path: &Path,
    wanted: &Wanted<'_>,
    owner: Owner,
) -> Result<Action, SinkError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits() | OFlag::O_NONBLOCK.bits())
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        // A symlink (ELOOP) is replaced by a regular file; a missing one is created.
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc_eloop()) => {
            return Ok(Action::Write)
        }
        Err(e) => return Err(io("read", path)(e)),
    };
    let meta = file.metadata().map_err(io("inspect", path))?;
    if !meta.is_file() || meta.len() != wanted.content.len() as u64 {
        return Ok(Action::Write);
    }
    let mut current = Vec::with_capacity(wanted.content.len());
    file.read_to_end(&mut current).map_err(io("read", path))?;
    let same = current == wanted.content;
    // The old key's bytes do not linger in memory longer than needed.
    zeroize::Zeroize::zeroize(&mut current);
    if !same {
        return Ok(Action::Write);
    }
    let wrong_mode = meta.mode() & 0o7777 != wanted.mode;
    let wrong_uid = owner.uid.is_some_and(|u| u.as_raw() != meta.uid());
    let wrong_gid = owner.gid.is_some_and(|g| g.as_raw() != meta.gid());
    Ok(if wrong_mode || wrong_uid || wrong_gid {
        Action::Repair
    } else {
        Action::Keep
    })
}

fn libc_eloop() -> i32 {
    nix::errno::Errno::ELOOP as i32
}

/// Carries out a plan. Either every changed file is replaced, or none is.
///
/// The folder's lock is taken first and the plan is made again under it: what another
/// writer put there in the meantime is compared, not a stale view of it.
pub fn apply(plan: &Plan<'_>) -> Result<(), SinkError> {
    if !plan.files.iter().any(|(_, a)| *a != Action::Keep) {
        return Ok(());
    }
    ensure_dir(&plan.dir)?;
    let _lock = DirLock::acquire(&plan.dir, LOCK_WAIT)?;
    let wanted: Vec<Wanted<'_>> = plan.files.iter().map(|(w, _)| *w).collect();
    let plan = self::plan(&plan.dir, &wanted, plan.owner)?;
    // Under the lock, no other writer is mid-write: every temporary of ours is stale,
    // whatever pid namespace its writer ran in.
    remove_stale_temporaries(&plan.dir, plan.files.iter().map(|(w, _)| w.name));

    let mut staged = Vec::new();
    for (wanted, action) in &plan.files {
        if *action == Action::Write {
            staged.push(Staged::create(&plan.dir, wanted, plan.owner)?);
        }
    }
    for (wanted, action) in &plan.files {
        if *action == Action::Repair {
            repair(&plan.dir.join(wanted.name), wanted.mode, plan.owner)?;
        }
    }
    commit_all(&plan.dir, &mut staged)?;
    if !staged.is_empty() {
        File::open(&plan.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the folder", &plan.dir))?;
    }
    Ok(())
}

/// How long a writer waits for another one to finish with the same folder: far longer
/// than a write takes, short enough that a pass is not stuck behind a hung process.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(3);
/// The lock file every out dir holds (see [`apply`]).
pub(crate) const LOCK_NAME: &str = ".certsync.lock";

/// The folder's advisory lock, released when dropped (the lock file stays).
pub(crate) struct DirLock {
    _held: Flock<File>,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path, wait: Duration) -> Result<DirLock, SinkError> {
        let path = dir.join(LOCK_NAME);
        // No-follow and no-block: a symlink or FIFO planted at the name is refused,
        // never opened through.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits() | OFlag::O_NONBLOCK.bits())
            .open(&path)
            .map_err(io("open the lock file", &path))?;
        let meta = file.metadata().map_err(io("inspect", &path))?;
        if !meta.is_file() {
            return Err(io("use as a lock file", &path)(std::io::Error::new(
                ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let deadline = Instant::now() + wait;
        let mut file = file;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(DirLock { _held: held }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(SinkError::Busy {
                        dir: dir.to_owned(),
                        lock: path,
                    })
                }
                Err((_, e)) => return Err(io("lock", &path)(e.into())),
            }
        }
    }
}

/// Renames every staged file into place. The files they replace are kept as hard links
/// first; if one rename fails, those done are undone, so the folder still holds the old
/// set, a matching pair, rather than a new certificate beside an old key.
fn commit_all(dir: &Path, staged: &mut [Staged]) -> Result<(), SinkError> {
    let mut kept: Vec<Option<PathBuf>> = Vec::with_capacity(staged.len());
    let forget = |kept: &[Option<PathBuf>]| {
        for k in kept.iter().flatten() {
            let _ = fs::remove_file(k);
        }
    };
    for s in staged.iter() {
        match s.keep_old() {
            Ok(k) => kept.push(k),
            Err(e) => {
                forget(&kept);
                return Err(e);
            }
        }
    }
    for i in 0..staged.len() {
        if let Err(cause) = staged[i].commit() {
            for j in (0..i).rev() {
                let target = &staged[j].target;
                let undone = match &kept[j] {
                    Some(old) => fs::rename(old, target),
                    None => fs::remove_file(target),
                };
                if let Err(source) = undone {
                    forget(&kept);
                    return Err(SinkError::RollbackFailed {
                        path: target.clone(),
                        cause: Box::new(cause),
                        source,
                    });
                }
            }
            forget(&kept);
            return Err(SinkError::RolledBack {
                dir: dir.to_owned(),
                cause: Box::new(cause),
            });
        }
    }
    forget(&kept);
    Ok(())
}

pub(crate) fn ensure_dir(dir: &Path) -> Result<(), SinkError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io("create the folder", dir))?;
    // The umask may have narrowed 0755; readers such as coturn need to traverse it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io("set the mode of", dir))
}

pub(crate) fn repair(path: &Path, mode: u32, owner: Owner) -> Result<(), SinkError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(io("open", path))?;
    if owner.uid.is_some() || owner.gid.is_some() {
        nix::unistd::fchown(file.as_raw_fd(), owner.uid, owner.gid)
            .map_err(|e| io("change the owner of", path)(e.into()))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of", path))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_MARK: &str = ".certsync-";

pub(crate) fn temp_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}{TEMP_MARK}{}-{n}.tmp", std::process::id())
}

/// Temporary files left by a certsync that was killed mid-write (SIGKILL, power loss).
/// Called only under the folder's lock, when no writer can be using one.
pub(crate) fn remove_stale_temporaries<'n>(dir: &Path, names: impl Iterator<Item = &'n str>) {
    let prefixes: Vec<String> = names.map(|n| format!(".{n}{TEMP_MARK}")).collect();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if prefixes.iter().any(|p| file_name.starts_with(p.as_str())) && file_name.ends_with(".tmp")
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A fully written temporary file, renamed into place by `commit`; removed if dropped
/// before that (an error in a later file, or a shutdown mid-pass).
struct Staged {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    fn create(dir: &Path, wanted: &Wanted<'_>, owner: Owner) -> Result<Staged, SinkError> {
        let temp = dir.join(temp_name(wanted.name));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&temp)
            .map_err(io("create a temporary file", &temp))?;
        let staged = Staged {
            temp,
            target: dir.join(wanted.name),
            committed: false,
        };
        // Owner and mode before content: the key is never readable by anyone else,
        // not even for a moment.
        if owner.uid.is_some() || owner.gid.is_some() {
            nix::unistd::fchown(file.as_raw_fd(), owner.uid, owner.gid)
                .map_err(|e| io("change the owner of", &staged.temp)(e.into()))?;
        }
        file.set_permissions(fs::Permissions::from_mode(wanted.mode))
            .map_err(io("set the mode of", &staged.temp))?;
        file.write_all(wanted.content)
            .map_err(io("write", &staged.temp))?;
        file.sync_all().map_err(io("fsync", &staged.temp))?;
        Ok(staged)
    }

    /// A hard link to the file this one replaces, to put it back if need be; `None`
    /// when there is none (or it is a symlink, which is replaced, never kept).
    fn keep_old(&self) -> Result<Option<PathBuf>, SinkError> {
        match fs::symlink_metadata(&self.target) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("inspect", &self.target)(e)),
        }
        let name = self
            .target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let old = self.target.with_file_name(temp_name(name));
        fs::hard_link(&self.target, &old).map_err(io("keep a link to", &self.target))?;
        Ok(Some(old))
    }

    fn commit(&mut self) -> Result<(), SinkError> {
        fs::rename(&self.temp, &self.target).map_err(io("rename into place", &self.target))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn writes_then_keeps_then_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let files = [
            Wanted {
                name: "fullchain.pem",
                content: b"CERT",
                mode: 0o644,
            },
            Wanted {
                name: "privkey.pem",
                content: b"KEY",
                mode: 0o600,
            },
        ];
        let p = plan(&out, &files, Owner::default()).unwrap();
        assert_eq!(p.names(Action::Write), vec!["fullchain.pem", "privkey.pem"]);
        apply(&p).unwrap();
        assert_eq!(fs::read(out.join("privkey.pem")).unwrap(), b"KEY");
        assert_eq!(mode_of(&out.join("privkey.pem")), 0o600);
        assert_eq!(mode_of(&out), 0o755);

        let p = plan(&out, &files, Owner::default()).unwrap();
        assert!(p.files.iter().all(|(_, a)| *a == Action::Keep));

        fs::set_permissions(out.join("privkey.pem"), fs::Permissions::from_mode(0o666)).unwrap();
        let p = plan(&out, &files, Owner::default()).unwrap();
        assert_eq!(p.names(Action::Repair), vec!["privkey.pem"]);
        assert!(!p.changes_content());
        apply(&p).unwrap();
        assert_eq!(mode_of(&out.join("privkey.pem")), 0o600);
        let mut left: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [LOCK_NAME, "fullchain.pem", "privkey.pem"]);
    }

    #[test]
    fn a_symlink_in_place_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("privkey.pem")).unwrap();
        let files = [Wanted {
            name: "privkey.pem",
            content: b"KEY",
            mode: 0o600,
        }];
        apply(&plan(dir.path(), &files, Owner::default()).unwrap()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(dir.path().join("privkey.pem"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".privkey.pem.certsync-999999999-0.tmp");
        fs::write(&stale, b"x").unwrap();
        let files = [Wanted {
            name: "privkey.pem",
            content: b"KEY",
            mode: 0o600,
        }];
        apply(&plan(dir.path(), &files, Owner::default()).unwrap()).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn owner_spec_parses_user_and_group() {
        assert_eq!(
            "turnserver:turnserver".parse::<OwnerSpec>().unwrap(),
            OwnerSpec {
                user: "turnserver".into(),
                group: Some("turnserver".into())
            }
        );
        assert_eq!(
            "0".parse::<OwnerSpec>().unwrap().resolve().unwrap().uid,
            Some(Uid::from_raw(0))
        );
        assert!("a:".parse::<OwnerSpec>().is_err());
        assert!(matches!(
            "no-such-user-x".parse::<OwnerSpec>().unwrap().resolve(),
            Err(SinkError::Owner(_))
        ));
    }
}
