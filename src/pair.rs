//! Pair-atomic output (`--pair-atomic`): the key and the certificate switch as one.
//!
//! The plain sink renames each file into place, one after the other; a reader that opens
//! the key and then the certificate in the instant between two renames gets a new key
//! with an old certificate. Here, as the kubelet does with `..data`, every file of a
//! target is written into a fresh generation folder `OUT/..certsync-<n>/`, then one
//! symlink, `OUT/..current`, is swapped to it by a single rename. The names readers use,
//! `OUT/fullchain.pem` and the others, are symlinks `..current/<name>`, made once: a
//! reader that resolves `..current` once (opens the folder, or reads the link) sees one
//! whole generation, never half of two.
//!
//! The generation before the current one stays until the next swap, so a reader that
//! resolved the old link a moment ago can still open the old pair; older ones are removed.
//!
//! Every rule of the plain sink holds: the folder's lock is held from the comparison to
//! the last cleanup, nothing is opened through a planted symlink (`..current` is read as
//! a link and only followed when it names one of our generation folders), unchanged
//! content is not rewritten, and a wrong owner or mode is repaired in place.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::sink::{self, io, Action, DirLock, Owner, Plan, SinkError, Wanted, LOCK_WAIT};

/// The symlink that names the generation in use.
pub const CURRENT: &str = "..current";
const CURRENT_TMP: &str = "..current.tmp";
const GENERATION_PREFIX: &str = "..certsync-";
/// Readers cross into the generation folder: it is listed and traversed by all, as the
/// out dir is; each file inside keeps its own mode (0600 for the key).
const GENERATION_MODE: u32 = 0o755;

/// `n` of a folder name `..certsync-<n>`; anything else is not ours.
fn generation_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GENERATION_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The generation folder `..current` names, if the link is ours and names a real folder
/// (not a symlink) of ours. Anything else counts as no generation: all is written anew.
fn current_generation(dir: &Path) -> Result<Option<String>, SinkError> {
    let link = dir.join(CURRENT);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        // Missing, or not a symlink (EINVAL): not a generation of ours.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => {
            return Ok(None)
        }
        Err(e) => return Err(io("read the link", &link)(e)),
    };
    let Some(name) = target.to_str().filter(|n| generation_number(n).is_some()) else {
        return Ok(None);
    };
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(Some(name.to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("inspect", &path)(e)),
    }
}

fn link_target(name: &str) -> PathBuf {
    Path::new(CURRENT).join(name)
}

/// Whether `OUT/name` is already the symlink `..current/name`.
fn links_to_current(dir: &Path, name: &str) -> Result<bool, SinkError> {
    let path = dir.join(name);
    match fs::read_link(&path) {
        Ok(t) => Ok(t == link_target(name)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => Ok(false),
        Err(e) => Err(io("read the link", &path)(e)),
    }
}

fn generation_needs_repair(path: &Path, owner: Owner) -> Result<bool, SinkError> {
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    Ok(meta.mode() & 0o7777 != GENERATION_MODE
        || owner.uid.is_some_and(|u| u.as_raw() != meta.uid())
        || owner.gid.is_some_and(|g| g.as_raw() != meta.gid()))
}

/// Compares `wanted` with the current generation. Reads, never writes.
///
/// A file is `Write` when its content differs, when there is no usable generation, or
/// when its user-facing name is not yet the link into `..current` (a new generation puts
/// it right). It is `Repair` when only its owner or mode, or its folder's, is wrong.
pub fn plan<'a>(dir: &Path, wanted: &[Wanted<'a>], owner: Owner) -> Result<Plan<'a>, SinkError> {
    let current = current_generation(dir)?;
    let folder_wrong = match &current {
        Some(gen) => generation_needs_repair(&dir.join(gen), owner)?,
        None => false,
    };
    let files = wanted
        .iter()
        .map(|w| {
            let Some(gen) = &current else {
                return Ok((*w, Action::Write));
            };
            if !links_to_current(dir, w.name)? {
                return Ok((*w, Action::Write));
            }
            let action = match sink::action_for(&dir.join(gen).join(w.name), w, owner)? {
                Action::Keep if folder_wrong => Action::Repair,
                other => other,
            };
            Ok((*w, action))
        })
        .collect::<Result<_, SinkError>>()?;
    Ok(Plan {
        dir: dir.to_owned(),
        owner,
        files,
    })
}

/// Carries out a plan: a new generation and one swap when any content changes, repairs
/// in place otherwise. The folder's lock is held throughout, and the plan made again
/// under it.
pub fn apply(plan: &Plan<'_>) -> Result<(), SinkError> {
    if !plan.files.iter().any(|(_, a)| *a != Action::Keep) {
        return Ok(());
    }
    sink::ensure_dir(&plan.dir)?;
    let _lock = DirLock::acquire(&plan.dir, LOCK_WAIT)?;
    let wanted: Vec<Wanted<'_>> = plan.files.iter().map(|(w, _)| *w).collect();
    let plan = self::plan(&plan.dir, &wanted, plan.owner)?;
    let dir = &plan.dir;
    sink::remove_stale_temporaries(dir, wanted.iter().map(|w| w.name));

    let current = current_generation(dir)?;
    match current {
        Some(gen) if !plan.changes_content() => {
            let gen_path = dir.join(&gen);
            if generation_needs_repair(&gen_path, plan.owner)? {
                let folder = open_folder(&gen_path)?;
                set_owner_and_mode(&folder, &gen_path, plan.owner)?;
            }
            for (w, action) in &plan.files {
                if *action == Action::Repair {
                    sink::repair(&gen_path.join(w.name), w.mode, plan.owner)?;
                }
            }
            Ok(())
        }
        previous => swap(dir, &wanted, plan.owner, previous.as_deref()),
    }
}

/// Writes every file into a new generation, points `..current` at it, makes the
/// user-facing links, then removes generations older than `previous`.
fn swap(
    dir: &Path,
    wanted: &[Wanted<'_>],
    owner: Owner,
    previous: Option<&str>,
) -> Result<(), SinkError> {
    let name = format!("{GENERATION_PREFIX}{}", next_generation(dir)?);
    let mut generation = NewGeneration::create(&dir.join(&name), owner)?;
    for w in wanted {
        write_new(&generation.path, w, owner)?;
    }
    generation
        .folder
        .sync_all()
        .map_err(io("fsync the folder", &generation.path))?;

    // Under the lock a `..current.tmp` can only be a leftover of a killed writer.
    let tmp = dir.join(CURRENT_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove the stale link", &tmp)(e)),
    }
    std::os::unix::fs::symlink(&name, &tmp).map_err(io("create the link", &tmp))?;
    let current = dir.join(CURRENT);
    if let Err(e) = fs::rename(&tmp, &current) {
        let _ = fs::remove_file(&tmp);
        return Err(io("swap the link", &current)(e));
    }
    generation.committed = true;

    for w in wanted {
        if !links_to_current(dir, w.name)? {
            make_link(dir, w.name)?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync the folder", dir))?;
    remove_old_generations(dir, &name, previous);
    Ok(())
}

/// One past the highest generation in the folder, so a name is never reused while a
/// reader may still hold the folder it named.
fn next_generation(dir: &Path) -> Result<u64, SinkError> {
    let entries = fs::read_dir(dir).map_err(io("list", dir))?;
    let highest = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(generation_number))
        .max();
    Ok(highest.map_or(1, |n| n.saturating_add(1)))
}

/// Replaces `OUT/name` (a regular file from the plain mode, a stale or planted link)
/// with the link `..current/name`, by rename: the name never goes missing.
fn make_link(dir: &Path, name: &str) -> Result<(), SinkError> {
    let tmp = dir.join(sink::temp_name(name));
    std::os::unix::fs::symlink(link_target(name), &tmp).map_err(io("create the link", &tmp))?;
    let path = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(io("rename into place", &path)(e));
    }
    Ok(())
}

/// Generation folders other than the new one and the one it replaced. A folder that
/// cannot be removed now is tried again after the next swap.
fn remove_old_generations(dir: &Path, new: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if generation_number(name).is_none() || name == new || Some(name) == previous {
            continue;
        }
        // `file_type` does not follow a symlink, and remove_dir_all never follows
        // one inside: nothing outside the out dir is removed.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn open_folder(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_DIRECTORY.bits() | OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(io("open the folder", path))
}

fn set_owner_and_mode(file: &File, path: &Path, owner: Owner) -> Result<(), SinkError> {
    if owner.uid.is_some() || owner.gid.is_some() {
        nix::unistd::fchown(file.as_raw_fd(), owner.uid, owner.gid)
            .map_err(|e| io("change the owner of", path)(e.into()))?;
    }
    file.set_permissions(fs::Permissions::from_mode(GENERATION_MODE))
        .map_err(io("set the mode of", path))
}

/// A generation folder being filled; removed with its content if dropped before
/// `..current` points to it.
struct NewGeneration {
    path: PathBuf,
    folder: File,
    committed: bool,
}

impl NewGeneration {
    fn create(path: &Path, owner: Owner) -> Result<NewGeneration, SinkError> {
        // mkdir fails on any existing name, a planted symlink included: never reused.
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(io("create the folder", path))?;
        let generation = NewGeneration {
            path: path.to_owned(),
            folder: open_folder(path)?,
            committed: false,
        };
        set_owner_and_mode(&generation.folder, path, owner)?;
        Ok(generation)
    }
}

impl Drop for NewGeneration {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A file in a fresh generation folder: owner and mode set before any content, so the
/// key is never readable by anyone else, then fsynced.
fn write_new(folder: &Path, wanted: &Wanted<'_>, owner: Owner) -> Result<(), SinkError> {
    let path = folder.join(wanted.name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(io("create", &path))?;
    if owner.uid.is_some() || owner.gid.is_some() {
        nix::unistd::fchown(file.as_raw_fd(), owner.uid, owner.gid)
            .map_err(|e| io("change the owner of", &path)(e.into()))?;
    }
    file.set_permissions(fs::Permissions::from_mode(wanted.mode))
        .map_err(io("set the mode of", &path))?;
    file.write_all(wanted.content).map_err(io("write", &path))?;
    file.sync_all().map_err(io("fsync", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files<'a>(cert: &'a [u8], key: &'a [u8]) -> [Wanted<'a>; 2] {
        [
            Wanted {
                name: "fullchain.pem",
                content: cert,
                mode: 0o644,
            },
            Wanted {
                name: "privkey.pem",
                content: key,
                mode: 0o600,
            },
        ]
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| generation_number(n).is_some())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn swaps_generations_and_keeps_only_the_previous_one() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        for (i, (cert, key)) in [(b"C1", b"K1"), (b"C2", b"K2"), (b"C3", b"K3")]
            .into_iter()
            .enumerate()
        {
            let p = plan(&out, &files(cert, key), Owner::default()).unwrap();
            assert!(p.changes_content());
            apply(&p).unwrap();
            assert_eq!(fs::read(out.join("fullchain.pem")).unwrap(), cert);
            assert_eq!(fs::read(out.join("privkey.pem")).unwrap(), key);
            let want = format!("{GENERATION_PREFIX}{}", i + 1);
            assert_eq!(fs::read_link(out.join(CURRENT)).unwrap(), Path::new(&want));
        }
        assert_eq!(generations(&out), ["..certsync-2", "..certsync-3"]);
        assert_eq!(
            fs::read_link(out.join("privkey.pem")).unwrap(),
            Path::new("..current/privkey.pem")
        );
        let gen = out.join("..certsync-3");
        assert_eq!(fs::metadata(&gen).unwrap().mode() & 0o7777, GENERATION_MODE);
        assert_eq!(
            fs::metadata(gen.join("privkey.pem")).unwrap().mode() & 0o7777,
            0o600
        );

        // Same content: nothing to do, no new generation.
        let p = plan(&out, &files(b"C3", b"K3"), Owner::default()).unwrap();
        assert!(p.files.iter().all(|(_, a)| *a == Action::Keep));

        // A wrong mode is repaired in place, in the current generation.
        fs::set_permissions(gen.join("privkey.pem"), fs::Permissions::from_mode(0o644)).unwrap();
        let p = plan(&out, &files(b"C3", b"K3"), Owner::default()).unwrap();
        assert_eq!(p.names(Action::Repair), ["privkey.pem"]);
        assert!(!p.changes_content());
        apply(&p).unwrap();
        assert_eq!(
            fs::metadata(gen.join("privkey.pem")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(generations(&out), ["..certsync-2", "..certsync-3"]);
    }

    #[test]
    fn plain_files_become_links_and_planted_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("fullchain.pem"), b"OLD").unwrap();
        let victim = tmp.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("privkey.pem"), b"precious").unwrap();
        // `..current` planted to point outside, and a planted generation name.
        std::os::unix::fs::symlink(&victim, out.join(CURRENT)).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("..certsync-7")).unwrap();

        apply(&plan(&out, &files(b"C", b"K"), Owner::default()).unwrap()).unwrap();
        assert_eq!(fs::read(victim.join("privkey.pem")).unwrap(), b"precious");
        assert_eq!(fs::read(out.join("fullchain.pem")).unwrap(), b"C");
        assert_eq!(fs::read(out.join("privkey.pem")).unwrap(), b"K");
        assert_eq!(
            fs::read_link(out.join(CURRENT)).unwrap(),
            Path::new("..certsync-8")
        );
        // The planted link is not a folder: left alone, and its target untouched.
        assert!(fs::symlink_metadata(out.join("..certsync-7"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(victim.join("privkey.pem").exists());
    }
}
