//! A worker applying the files received from its master (PROTOCOL.md §4.1.7).
//!
//! Every path comes from the network, so each one is first confined to the synced item it claims to
//! belong to (see `confine`), then reached from the item directory one component at a time without
//! following links (see `fsat`). A file is never written in place: its new content goes to
//! `.<name>.tmp` beside it, is synced to disk and renamed over the old file, so a crash at any moment
//! leaves either the old file or the new one, never a mixture. Temporary files left by such a crash are
//! removed the next time their directory is touched.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};

use crate::config::{FilesTable, ItemSpec};

use super::client_keys::{count_agents, is_drastic_shrink};
use super::confine::{confine, dir_rel, Refusal, Target};
use super::fsat::{dir_names, kind_at, open_dir_at, FsError, Kind, Owner};
use super::hash::open_regular;
use super::walk::key_dir;

/// Mode of directories created on the way to a received file, as stock workers create them.
const DIR_MODE: u32 = 0o770;

/// The one file whose shrinking is held back (see [`ApplyPolicy`]).
const CLIENT_KEYS: &str = "etc/client.keys";

/// What to change: paths relative to the install root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyPlan {
    /// Files to create or overwrite; each is present under the unpack directory at the same relative path.
    pub writes: Vec<String>,
    /// Files to delete.
    pub deletes: Vec<String>,
}

/// Choices the operator makes about what a master may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyPolicy {
    /// Accept an `etc/client.keys` from the master holding fewer than half the agents of ours (or its
    /// deletion). Off by default: a master that lost its keys would otherwise disconnect every agent
    /// of the worker.
    pub allow_client_keys_shrink: bool,
}

/// What was done, per file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Files written where none existed.
    pub created: usize,
    /// Files written over an existing one.
    pub updated: usize,
    /// Files removed (a delete of a file already absent is not counted, and not an error).
    pub deleted: usize,
    /// Bytes of the files written (created and updated).
    pub bytes: u64,
    /// Paths not touched because they are not allowed: relative path and reason.
    pub refused: Vec<(String, String)>,
    /// Paths that could not be written or deleted: relative path and error.
    pub errors: Vec<(String, String)>,
    /// Things an operator should know, in plain words.
    pub warnings: Vec<String>,
}

/// Applies `plan` under `home`, taking new contents from `unpack_dir`. Writes come first, then
/// deletes, then the removal of directories emptied by the deletes. Never stops at the first problem:
/// each path is reported on its own.
pub fn apply(
    home: &Path,
    unpack_dir: &Path,
    plan: &ApplyPlan,
    files: &FilesTable,
    policy: &ApplyPolicy,
) -> ApplyReport {
    let mut run = Run {
        home,
        files,
        policy: *policy,
        owner: Owner::lookup(),
        cleaned: BTreeSet::new(),
        open_dirs: HashMap::new(),
        report: ApplyReport::default(),
    };
    let mut batch = Vec::new();
    for rel in &plan.writes {
        let staged = confine(rel, files)
            .map_err(FsError::from)
            .and_then(|target| run.stage(unpack_dir, &target));
        match staged {
            Ok(Staging::Staged(file)) => {
                batch.push(file);
                if batch.len() >= BATCH_FILES {
                    run.commit(&mut batch);
                }
            }
            Ok(Staging::Done(outcome)) => run.record(rel, Ok(outcome)),
            Err(e) => run.record(rel, Err(e)),
        }
    }
    run.commit(&mut batch);
    let mut emptied = BTreeSet::new();
    for rel in &plan.deletes {
        let outcome = confine(rel, files)
            .map_err(FsError::from)
            .and_then(|target| {
                let outcome = run.delete(&target)?;
                if target.item.remove_subdirs_if_empty
                    && matches!(outcome, Outcome::Deleted | Outcome::Absent)
                {
                    emptied.insert((target.item.key.clone(), target.dirs.join("/")));
                }
                Ok(outcome)
            });
        run.record(rel, outcome);
    }
    // Deepest first, so a parent is examined after its children had their chance to go.
    let mut emptied: Vec<(String, String)> = emptied.into_iter().collect();
    emptied.sort_by_key(|(_, dirs)| std::cmp::Reverse(dirs.split('/').count()));
    for (key, dirs) in emptied {
        run.prune(&key, &dirs);
    }
    run.report
}

/// Files staged before one flush of the file system and their renames; bounds open descriptors.
const BATCH_FILES: usize = 256;

/// A new copy written beside its destination, waiting to be renamed into place.
struct Staged {
    rel: String,
    dir: Rc<OwnedFd>,
    temporary: String,
    name: String,
    existed: bool,
    /// Size of the new copy.
    bytes: u64,
}

/// What staging one write produced.
enum Staging {
    Staged(Staged),
    /// Nothing to rename (the file was deliberately kept).
    Done(Outcome),
}

/// What happened to one path.
enum Outcome {
    Created,
    Updated,
    Deleted,
    /// A delete of a file that was not there.
    Absent,
    /// Deliberately left as it was; the warning says why.
    Kept(String),
}

/// State of one `apply` call.
struct Run<'a> {
    home: &'a Path,
    files: &'a FilesTable,
    policy: ApplyPolicy,
    owner: Option<Owner>,
    /// Directories (relative to the install root) already rid of stale temporary files.
    cleaned: BTreeSet<String>,
    /// Directories opened for the current batch of writes, so each is walked to once per batch.
    open_dirs: HashMap<String, Rc<OwnedFd>>,
    report: ApplyReport,
}

impl Run<'_> {
    fn record(&mut self, rel: &str, outcome: Result<Outcome, FsError>) {
        let report = &mut self.report;
        match outcome {
            Ok(Outcome::Created) => report.created += 1,
            Ok(Outcome::Updated) => report.updated += 1,
            Ok(Outcome::Deleted) => report.deleted += 1,
            Ok(Outcome::Absent) => {}
            Ok(Outcome::Kept(warning)) => report.warnings.push(warning),
            Err(FsError::Refused(why)) => report.refused.push((rel.to_string(), why.to_string())),
            Err(e) => report.errors.push((rel.to_string(), e.to_string())),
        }
    }

    /// Opens the directory `dirs` below the directory of `item`, creating what is missing when
    /// `create`. `Ok(None)`: it does not exist (and `create` was false).
    fn open_dir(
        &mut self,
        item: &ItemSpec,
        dirs: &[&str],
        create: bool,
    ) -> Result<Option<OwnedFd>, FsError> {
        let Some(mut dir) = self.open_item_dir(item, create)? else {
            return Ok(None);
        };
        let make = create.then_some((Mode::from_bits_truncate(DIR_MODE), self.owner));
        for (depth, name) in dirs.iter().enumerate() {
            let rel = dir_rel(item, &dirs[..=depth]);
            match open_dir_at(dir.as_fd(), name, &rel, make)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        let rel = dir_rel(item, dirs);
        if self.cleaned.insert(rel.clone()) {
            self.remove_stale_temporaries(dir.as_fd(), &rel);
        }
        Ok(Some(dir))
    }

    /// The item directory itself. What lies above it belongs to the installation and may be a link
    /// (a relocated `var/`, say); the item directory and everything below it may not.
    fn open_item_dir(&self, item: &ItemSpec, create: bool) -> Result<Option<OwnedFd>, FsError> {
        let key = key_dir(&item.key);
        let (above, name) = match key.rsplit_once('/') {
            Some((above, name)) => (above, name),
            None => ("", key),
        };
        let above_path = self.home.join(above);
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&above_path)
                .map_err(|e| FsError::io("cannot create directory", above, e))?;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let above_fd = match openat(AT_FDCWD, &above_path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(e) => return Err(FsError::io("cannot open directory", above, e)),
        };
        if name.is_empty() {
            return Ok(Some(above_fd));
        }
        let make = create.then_some((Mode::from_bits_truncate(DIR_MODE), self.owner));
        open_dir_at(above_fd.as_fd(), name, key, make)
    }

    /// Removes `.<name>.tmp` regular files, which only an interrupted write leaves behind.
    fn remove_stale_temporaries(&mut self, dir: BorrowedFd<'_>, rel: &str) {
        let Ok(names) = dir_names(dir) else {
            return;
        };
        let mut removed = 0;
        for name in names {
            let Some(name) = name.to_str() else { continue };
            let stale =
                name.len() > ".tmp".len() + 1 && name.starts_with('.') && name.ends_with(".tmp");
            if stale
                && kind_at(dir, name) == Ok(Kind::File)
                && unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            self.report.warnings.push(format!(
                "Removed {removed} temporary file(s) left in {rel} by an interrupted update."
            ));
        }
    }

    fn stage(&mut self, unpack_dir: &Path, target: &Target<'_>) -> Result<Staging, FsError> {
        let rel = target.rel;
        let (mut source, _) = open_regular(&unpack_dir.join(rel))
            .map_err(|e| FsError::io("cannot read the received copy of", rel, e))?;
        let dir_key = dir_rel(target.item, &target.dirs);
        let dir = match self.open_dirs.get(&dir_key) {
            Some(dir) => dir.clone(),
            None => {
                let dir = self
                    .open_dir(target.item, &target.dirs, true)?
                    .ok_or_else(|| {
                        FsError::io("cannot create the directory of", rel, Errno::ENOENT)
                    })?;
                let dir = Rc::new(dir);
                self.open_dirs.insert(dir_key, dir.clone());
                dir
            }
        };
        let existed = match kind_at(dir.as_fd(), target.name)
            .map_err(|e| FsError::io("cannot inspect", rel, e))?
        {
            Kind::Missing => false,
            Kind::File | Kind::Other => true,
            Kind::Symlink => return Err(Refusal::Symlink(rel.to_string()).into()),
            Kind::Dir => {
                return Err(FsError::IsADirectory {
                    rel: rel.to_string(),
                })
            }
        };
        if rel == CLIENT_KEYS && existed && !self.policy.allow_client_keys_shrink {
            let current = self.agents_in(dir.as_fd(), target.name, rel)?;
            let new = count_agents(BufReader::new(&source))
                .and_then(|n| source.rewind().map(|()| n))
                .map_err(|e| FsError::io("cannot read the received copy of", rel, e))?;
            if is_drastic_shrink(current, new) {
                return Ok(Staging::Done(Outcome::Kept(format!(
                    "{rel} was not replaced: the master's copy lists {new} agents while this worker \
                     holds {current}. A file with fewer than half the agents is held back in case the \
                     master lost its keys; set allow_client_keys_shrink = true in etc/clusterd.toml to \
                     accept it."
                ))));
            }
        }
        let bytes = source.metadata().map_or(0, |m| m.len());
        let temporary = self.copy_beside(dir.as_fd(), target, &mut source)?;
        Ok(Staging::Staged(Staged {
            rel: rel.to_string(),
            dir,
            temporary,
            name: target.name.to_string(),
            existed,
            bytes,
        }))
    }

    /// Makes the staged copies durable with one flush per file system, renames each over its
    /// destination, then syncs each directory once so the renames survive a crash too. A SIGKILL at
    /// any point leaves every destination whole, old or new.
    fn commit(&mut self, batch: &mut Vec<Staged>) {
        let mut devices = BTreeSet::new();
        for file in batch.iter() {
            if let Ok(st) = fstat(file.dir.as_fd()) {
                // SAFETY: syncfs only reads the descriptor, which `file.dir` keeps open.
                if devices.insert(st.st_dev) && unsafe { libc::syncfs(file.dir.as_raw_fd()) } != 0 {
                    self.report.warnings.push(format!(
                        "Could not flush the file system of {}: {}",
                        file.rel,
                        io::Error::last_os_error()
                    ));
                }
            }
        }
        for file in batch.iter() {
            let renamed = renameat(
                file.dir.as_fd(),
                file.temporary.as_str(),
                file.dir.as_fd(),
                file.name.as_str(),
            )
            .map_err(|e| FsError::io("cannot rename into place", &file.rel, e));
            if renamed.is_err() {
                let _ = unlinkat(
                    file.dir.as_fd(),
                    file.temporary.as_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
            }
            if renamed.is_ok() {
                self.report.bytes += file.bytes;
            }
            let outcome = renamed.map(|()| {
                if file.existed {
                    Outcome::Updated
                } else {
                    Outcome::Created
                }
            });
            self.record(&file.rel, outcome);
        }
        self.open_dirs.clear();
        let mut synced = BTreeSet::new();
        for file in batch.drain(..) {
            let Ok(st) = fstat(file.dir.as_fd()) else {
                continue;
            };
            if synced.insert((st.st_dev, st.st_ino)) {
                if let Err(e) = fsync(file.dir.as_fd()) {
                    let error = FsError::io("cannot sync the directory of", &file.rel, e);
                    self.report
                        .errors
                        .push((file.rel.clone(), error.to_string()));
                }
            }
        }
    }

    /// Copies `source` to `.<name>.tmp` beside the destination with the item's permissions and owner;
    /// returns the temporary name. Durability and the rename come in [`Run::commit`].
    fn copy_beside(
        &self,
        dir: BorrowedFd<'_>,
        target: &Target<'_>,
        source: &mut File,
    ) -> Result<String, FsError> {
        let rel = target.rel;
        let temporary = format!(".{}.tmp", target.name);
        match unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(FsError::io(
                    "cannot remove the old temporary copy of",
                    rel,
                    e,
                ))
            }
        }
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            dir,
            temporary.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| FsError::io("cannot create a temporary copy of", rel, e))?;
        let mut copy = File::from(fd);
        let written = io::copy(source, &mut copy)
            .map_err(|e| FsError::io("cannot write", rel, e))
            .and_then(|_| {
                fchmod(
                    copy.as_fd(),
                    Mode::from_bits_truncate(target.item.permissions),
                )
                .and_then(|()| Owner::apply(self.owner, copy.as_fd()))
                .map_err(|e| FsError::io("cannot set the permissions of", rel, e))
            });
        if let Err(e) = written {
            let _ = unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        Ok(temporary)
    }

    fn agents_in(&self, dir: BorrowedFd<'_>, name: &str, rel: &str) -> Result<usize, FsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty())
            .map_err(|e| FsError::io("cannot read", rel, e))?;
        count_agents(BufReader::new(File::from(fd))).map_err(|e| FsError::io("cannot read", rel, e))
    }

    fn delete(&mut self, target: &Target<'_>) -> Result<Outcome, FsError> {
        let rel = target.rel;
        let Some(dir) = self.open_dir(target.item, &target.dirs, false)? else {
            return Ok(Outcome::Absent);
        };
        match kind_at(dir.as_fd(), target.name)
            .map_err(|e| FsError::io("cannot inspect", rel, e))?
        {
            Kind::Missing => return Ok(Outcome::Absent),
            Kind::File | Kind::Other => {}
            Kind::Symlink => return Err(Refusal::Symlink(rel.to_string()).into()),
            Kind::Dir => {
                return Err(FsError::IsADirectory {
                    rel: rel.to_string(),
                })
            }
        }
        if rel == CLIENT_KEYS && !self.policy.allow_client_keys_shrink {
            let current = self.agents_in(dir.as_fd(), target.name, rel)?;
            if is_drastic_shrink(current, 0) {
                return Ok(Outcome::Kept(format!(
                    "{rel} was not deleted: the master has no client.keys while this worker holds \
                     {current} agents. Set allow_client_keys_shrink = true in etc/clusterd.toml to \
                     accept it."
                )));
            }
        }
        match unlinkat(dir.as_fd(), target.name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Ok(Outcome::Absent),
            Err(e) => return Err(FsError::io("cannot delete", rel, e)),
        }
        fsync(dir.as_fd()).map_err(|e| FsError::io("cannot sync the directory of", rel, e))?;
        Ok(Outcome::Deleted)
    }

    /// Removes the directory `dirs` below item `key`, and then its parents up to (not including) the
    /// item directory, for as long as each holds nothing or only excluded file names.
    fn prune(&mut self, key: &str, dirs: &str) {
        let Some(item) = self.files.item(key) else {
            return;
        };
        let parts: Vec<&str> = dirs.split('/').filter(|p| !p.is_empty()).collect();
        for depth in (1..=parts.len()).rev() {
            let name = parts[depth - 1];
            let rel = dir_rel(item, &parts[..depth]);
            let removed = self
                .open_dir(item, &parts[..depth - 1], false)
                .and_then(|parent| match parent {
                    Some(parent) => self.remove_if_empty(parent.as_fd(), name, &rel),
                    None => Ok(false),
                });
            match removed {
                Ok(true) => {}
                Ok(false) => return,
                Err(FsError::Refused(why)) => {
                    self.report.refused.push((rel, why.to_string()));
                    return;
                }
                Err(e) => {
                    self.report.errors.push((rel, e.to_string()));
                    return;
                }
            }
        }
    }

    /// Removes directory `name` of `parent` if it holds only excluded file names; `Ok(true)` if it is gone.
    fn remove_if_empty(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        rel: &str,
    ) -> Result<bool, FsError> {
        let Some(dir) = open_dir_at(parent, name, rel, None)? else {
            return Ok(true);
        };
        let names = dir_names(dir.as_fd()).map_err(|e| FsError::io("cannot list", rel, e))?;
        let mut leftovers = Vec::with_capacity(names.len());
        for name in &names {
            match name.to_str() {
                Some(n) if is_excluded_file_name(n, self.files) => leftovers.push(n),
                _ => return Ok(false),
            }
        }
        for leftover in leftovers {
            match unlinkat(dir.as_fd(), leftover, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                // A directory with an excluded name: keep the whole thing.
                Err(Errno::EISDIR | Errno::EPERM) => return Ok(false),
                Err(e) => return Err(FsError::io("cannot clean", rel, e)),
            }
        }
        match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            // Something appeared meanwhile.
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(FsError::io("cannot remove directory", rel, e)),
        }
        fsync(parent).map_err(|e| FsError::io("cannot sync the parent of", rel, e))?;
        Ok(true)
    }
}

/// A name that may be left in a directory that is otherwise empty: one of `excluded_files` (stock
/// workers look at that list only, not at the extensions).
fn is_excluded_file_name(name: &str, files: &FilesTable) -> bool {
    files.excluded_files.iter().any(|n| n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterJson, Dialect};
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn table() -> FilesTable {
        ClusterJson::defaults(Dialect::V4_14).files
    }

    fn put(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn read(root: &Path, rel: &str) -> Vec<u8> {
        fs::read(root.join(rel)).unwrap()
    }

    fn mode(root: &Path, rel: &str) -> u32 {
        fs::symlink_metadata(root.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn plan(writes: &[&str], deletes: &[&str]) -> ApplyPlan {
        ApplyPlan {
            writes: writes.iter().map(|s| s.to_string()).collect(),
            deletes: deletes.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Every entry under `root` (links not followed): path → content, link target or `<dir>`.
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let value = if meta.file_type().is_symlink() {
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                } else if meta.is_dir() {
                    pending.push(path.clone());
                    b"<dir>".to_vec()
                } else {
                    fs::read(&path).unwrap()
                };
                out.insert(path, value);
            }
        }
        out
    }

    fn keys(agents: usize) -> Vec<u8> {
        let mut text = String::from("# header\n999 !removed any 0000\n");
        for id in 1..=agents {
            text.push_str(&format!("{id:03} agent{id} any {id:032}\n"));
        }
        text.into_bytes()
    }

    #[test]
    fn writes_create_and_update_with_the_item_permissions() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let (h, u) = (home.path(), unpack.path());
        put(h, "etc/shared/default/agent.conf", b"old");
        fs::set_permissions(
            h.join("etc/shared/default/agent.conf"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let writes = [
            "etc/shared/default/agent.conf",
            "etc/shared/new_group/sub/file.txt",
            "etc/client.keys",
            "etc/rules/local_rules.xml",
            "var/multigroups/abc123/merged.mg",
        ];
        for rel in writes {
            put(u, rel, format!("new {rel}").as_bytes());
        }
        let report = apply(h, u, &plan(&writes, &[]), &table(), &ApplyPolicy::default());
        let bytes = writes
            .iter()
            .map(|rel| format!("new {rel}").len() as u64)
            .sum();
        assert_eq!(
            report,
            ApplyReport {
                created: 4,
                updated: 1,
                bytes,
                ..ApplyReport::default()
            }
        );
        for rel in writes {
            assert_eq!(read(h, rel), format!("new {rel}").as_bytes());
        }
        assert_eq!(mode(h, "etc/shared/default/agent.conf"), 0o660);
        assert_eq!(mode(h, "etc/shared/new_group/sub/file.txt"), 0o660);
        assert_eq!(mode(h, "etc/client.keys"), 0o640);
        assert_eq!(mode(h, "etc/shared/new_group"), 0o770);
        assert_eq!(mode(h, "etc/shared/new_group/sub"), 0o770);
        assert_eq!(mode(h, "var/multigroups"), 0o770);
        // Sources stay where they were; nothing temporary is left behind.
        assert!(u.join("etc/client.keys").exists());
        assert!(!snapshot(h)
            .keys()
            .any(|p| p.to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn deletes_remove_files_and_the_directories_they_empty() {
        let home = tempfile::tempdir().unwrap();
        let (h, u) = (home.path(), home.path().join("unused"));
        put(h, "etc/shared/g1/agent.conf", b"x");
        put(
            h,
            "etc/shared/g1/ar.conf",
            b"excluded name, does not keep g1",
        );
        put(h, "etc/shared/g2/a/b/file", b"x");
        put(h, "etc/shared/g3/x", b"x");
        put(h, "etc/shared/g3/y", b"stays, and so does g3");
        put(
            h,
            "etc/shared/g4/notes.swp",
            b"excluded extension: keeps g4",
        );
        put(h, "etc/shared/g4/z", b"x");
        fs::create_dir_all(h.join("etc/shared/g5")).unwrap();
        put(h, "etc/shared/top", b"x");
        put(h, "etc/rules/sub/r.xml", b"x");
        let deletes = [
            "etc/shared/g1/agent.conf",
            "etc/shared/g2/a/b/file",
            "etc/shared/g3/x",
            "etc/shared/g4/z",
            "etc/shared/g5/already-gone",
            "etc/shared/top",
            "etc/rules/sub/r.xml",
            "etc/lists/never-existed",
        ];
        let report = apply(
            h,
            &u,
            &plan(&[], &deletes),
            &table(),
            &ApplyPolicy::default(),
        );
        assert_eq!(
            report,
            ApplyReport {
                deleted: 6,
                ..ApplyReport::default()
            }
        );
        for gone in [
            "etc/shared/g1",
            "etc/shared/g2",
            "etc/shared/g3/x",
            "etc/shared/g4/z",
            "etc/shared/g5",
            "etc/shared/top",
            "etc/rules/sub/r.xml",
        ] {
            assert!(!h.join(gone).exists(), "{gone}");
        }
        for kept in [
            "etc/shared",
            "etc/shared/g3/y",
            "etc/shared/g4/notes.swp",
            "etc/rules/sub",
        ] {
            assert!(h.join(kept).exists(), "{kept}");
        }
    }

    #[test]
    fn hostile_paths_are_refused_and_nothing_outside_is_touched() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (h, u, o) = (home.path(), unpack.path(), outside.path());
        put(o, "victim", b"outside");
        put(o, "local_rules.xml", b"outside rules");
        put(h, "etc/ossec.conf", b"<ossec_config/>");
        put(h, "etc/shared/default/agent.conf", b"<agent_config/>");
        symlink(o, h.join("etc/shared/evil")).unwrap();
        symlink(o, h.join("etc/rules")).unwrap();
        symlink(o.join("victim"), h.join("etc/shared/default/link.conf")).unwrap();
        let writes = [
            "../escape",
            "/tmp/absolute",
            "etc/shared/../../escape",
            "etc/shared/./default/agent.conf",
            "etc/shared//default/agent.conf",
            "etc\\shared\\x",
            "etc/shared/evil/victim",
            "etc/shared/evil/new.conf",
            "etc/rules/local_rules.xml",
            "etc/shared/default/link.conf",
            "bin/wazuh-clusterd",
            "etc/ossec.conf",
            "etc/shared/default/ar.conf",
            "etc/shared/default/agent.conf.swp",
            "etc/sub/client.keys",
        ];
        for rel in writes {
            if !rel.starts_with('/') && !rel.contains("..") {
                put(u, rel, b"hostile");
            }
        }
        let deletes = [
            "etc/shared/evil/victim",
            "etc/rules/local_rules.xml",
            "etc/shared/default/link.conf",
            "etc/ossec.conf",
            "../../etc/passwd",
        ];
        let home_before = snapshot(h);
        let outside_before = snapshot(o);
        let report = apply(
            h,
            u,
            &plan(&writes, &deletes),
            &table(),
            &ApplyPolicy::default(),
        );
        assert_eq!(
            report.created + report.updated + report.deleted,
            0,
            "{report:?}"
        );
        assert!(report.errors.is_empty(), "{report:?}");
        let refused: Vec<&str> = report.refused.iter().map(|(p, _)| p.as_str()).collect();
        let expected: Vec<&str> = writes.iter().chain(deletes.iter()).copied().collect();
        assert_eq!(refused, expected);
        let reason = |rel: &str| {
            report
                .refused
                .iter()
                .find(|(p, _)| p == rel)
                .map(|(_, why)| why.clone())
                .unwrap()
        };
        assert_eq!(
            reason("etc/shared/evil/new.conf"),
            "etc/shared/evil is a symbolic link"
        );
        assert_eq!(
            reason("etc/rules/local_rules.xml"),
            "etc/rules is a symbolic link"
        );
        assert_eq!(
            reason("etc/shared/default/link.conf"),
            "etc/shared/default/link.conf is a symbolic link"
        );
        assert_eq!(
            reason("bin/wazuh-clusterd"),
            "not inside any synced directory"
        );
        assert_eq!(snapshot(h), home_before);
        assert_eq!(snapshot(o), outside_before);
    }

    #[test]
    fn a_missing_source_is_an_error_and_creates_nothing() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let report = apply(
            home.path(),
            unpack.path(),
            &plan(&["etc/shared/new/agent.conf"], &[]),
            &table(),
            &ApplyPolicy::default(),
        );
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].0, "etc/shared/new/agent.conf");
        assert!(snapshot(home.path()).is_empty());
    }

    #[test]
    fn client_keys_losing_most_agents_is_held_back_unless_allowed() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let (h, u) = (home.path(), unpack.path());
        put(h, "etc/client.keys", &keys(10));
        put(u, "etc/client.keys", &keys(4));
        let writes = plan(&["etc/client.keys"], &[]);
        let held = apply(h, u, &writes, &table(), &ApplyPolicy::default());
        assert_eq!(held.updated, 0);
        assert_eq!(held.warnings.len(), 1);
        let warning = &held.warnings[0];
        assert!(
            warning.contains("lists 4 agents while this worker holds 10")
                && warning.contains("allow_client_keys_shrink"),
            "{warning}"
        );
        assert_eq!(read(h, "etc/client.keys"), keys(10));

        let allow = ApplyPolicy {
            allow_client_keys_shrink: true,
        };
        let allowed = apply(h, u, &writes, &table(), &allow);
        assert_eq!(allowed.updated, 1);
        assert!(allowed.warnings.is_empty());
        assert_eq!(read(h, "etc/client.keys"), keys(4));

        // Half is not fewer than half; growing is always fine.
        put(u, "etc/client.keys", &keys(2));
        assert_eq!(
            apply(h, u, &writes, &table(), &ApplyPolicy::default()).updated,
            1
        );
        put(u, "etc/client.keys", &keys(300));
        assert_eq!(
            apply(h, u, &writes, &table(), &ApplyPolicy::default()).updated,
            1
        );
        assert_eq!(read(h, "etc/client.keys"), keys(300));

        let delete = plan(&[], &["etc/client.keys"]);
        let held = apply(h, u, &delete, &table(), &ApplyPolicy::default());
        assert_eq!(held.deleted, 0);
        assert!(held.warnings[0].contains("holds 300 agents"), "{held:?}");
        assert_eq!(apply(h, u, &delete, &table(), &allow).deleted, 1);
        assert!(!h.join("etc/client.keys").exists());
    }

    #[test]
    fn temporaries_of_an_interrupted_update_are_removed() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let (h, u) = (home.path(), unpack.path());
        put(h, "etc/shared/default/.agent.conf.tmp", b"half written");
        put(h, "etc/shared/default/.other.tmp", b"half written");
        put(h, "etc/shared/default/keep.tmp", b"not ours");
        put(u, "etc/shared/default/agent.conf", b"new");
        let report = apply(
            h,
            u,
            &plan(&["etc/shared/default/agent.conf"], &[]),
            &table(),
            &ApplyPolicy::default(),
        );
        assert_eq!(report.created, 1);
        assert_eq!(
            report.warnings,
            vec![
                "Removed 2 temporary file(s) left in etc/shared/default by an interrupted update."
                    .to_string()
            ]
        );
        let names: Vec<_> = fs::read_dir(h.join("etc/shared/default"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(h.join("etc/shared/default/keep.tmp").exists());
    }

    const CHILD_ENV: &str = "CLUSTERD_TEST_APPLY_CHILD";
    const CRASH_FILES: usize = 150;
    const OLD_BYTES: usize = 200_000;
    const NEW_BYTES: usize = 300_000;

    fn crash_plan() -> ApplyPlan {
        ApplyPlan {
            writes: (0..CRASH_FILES)
                .map(|i| format!("etc/shared/crash/f{i:03}"))
                .collect(),
            deletes: Vec::new(),
        }
    }

    /// Runs only as the child of `a_killed_apply_leaves_whole_files_and_can_be_rerun`.
    #[test]
    fn crash_child() {
        let Ok(dirs) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (home, unpack) = dirs.split_once('\n').unwrap();
        apply(
            Path::new(home),
            Path::new(unpack),
            &crash_plan(),
            &table(),
            &ApplyPolicy::default(),
        );
    }

    #[test]
    fn a_killed_apply_leaves_whole_files_and_can_be_rerun() {
        let home = tempfile::tempdir().unwrap();
        let unpack = tempfile::tempdir().unwrap();
        let (h, u) = (home.path(), unpack.path());
        let old = vec![b'o'; OLD_BYTES];
        let new = vec![b'n'; NEW_BYTES];
        let plan = crash_plan();
        for rel in &plan.writes {
            put(h, rel, &old);
            put(u, rel, &new);
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pool::apply::tests::crash_child",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}\n{}", h.display(), u.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as a few files are in place, while it is writing the next ones.
        let watched = h.join(&plan.writes[5]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            if fs::metadata(&watched).is_ok_and(|m| m.len() == NEW_BYTES as u64) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        child.wait().unwrap();

        let mut replaced = 0;
        for rel in &plan.writes {
            let content = read(h, rel);
            assert!(
                content == old || content == new,
                "{rel} is neither old nor new"
            );
            replaced += usize::from(content == new);
        }
        eprintln!("killed after {replaced} of {CRASH_FILES} files");
        if replaced == CRASH_FILES {
            eprintln!("note: the child finished before it could be killed");
        }
        // Whatever the kill left in flight, plus one planted for certain.
        put(h, "etc/shared/crash/.f149.tmp", b"nnn");

        let report = apply(h, u, &plan, &table(), &ApplyPolicy::default());
        assert_eq!(report.updated, CRASH_FILES, "{report:?}");
        assert!(report.errors.is_empty() && report.refused.is_empty());
        for rel in &plan.writes {
            assert!(read(h, rel) == new, "{rel}");
        }
        let leftovers: Vec<_> = fs::read_dir(h.join("etc/shared/crash"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
