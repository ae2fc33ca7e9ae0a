//! Directory-relative file operations (`openat`, `mkdirat`, `renameat`, ...) for writing received files.
//!
//! Checking a path for symbolic links and then opening it by name leaves a window in which a local
//! process can swap a directory for a link. Walking down from the item directory one component at a
//! time, each opened with `O_NOFOLLOW` relative to the descriptor of its parent, closes that window:
//! every later operation happens inside the directory that was checked.

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fsync, Gid, Uid};

use super::confine::Refusal;

/// Why a file operation under an item directory failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// A path component is a symbolic link: the whole operation is refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{what} {rel}: {source}")]
    Io {
        what: &'static str,
        rel: String,
        source: io::Error,
    },
    #[error("{rel} is not a directory")]
    NotADirectory { rel: String },
    #[error("{rel} is a directory")]
    IsADirectory { rel: String },
}

impl FsError {
    pub fn io(what: &'static str, rel: &str, source: impl Into<io::Error>) -> FsError {
        FsError::Io {
            what,
            rel: rel.to_string(),
            source: source.into(),
        }
    }
}

/// What a directory entry is, seen without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    File,
    Dir,
    Symlink,
    Other,
}

/// Owner given to what we create: `wazuh:wazuh` when running as root, else unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Owner {
    /// `wazuh:wazuh` when running as root and that user exists. Wazuh's own daemons run as that user
    /// and must be able to read the files; any other process can only create files it owns anyway.
    pub fn lookup() -> Option<Owner> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let user = nix::unistd::User::from_name("wazuh").ok().flatten()?;
        let gid = nix::unistd::Group::from_name("wazuh")
            .ok()
            .flatten()
            .map_or(user.gid, |group| group.gid);
        Some(Owner { uid: user.uid, gid })
    }

    pub fn apply(owner: Option<Owner>, fd: BorrowedFd<'_>) -> nix::Result<()> {
        match owner {
            Some(owner) => fchown(fd, Some(owner.uid), Some(owner.gid)),
            None => Ok(()),
        }
    }
}

/// The kind of `name` in `dir`, without following a link.
pub(crate) fn kind_at(dir: BorrowedFd<'_>, name: &str) -> nix::Result<Kind> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(kind_of(&stat)),
        Err(Errno::ENOENT) => Ok(Kind::Missing),
        Err(e) => Err(e),
    }
}

fn kind_of(stat: &FileStat) -> Kind {
    let format = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if format == SFlag::S_IFREG {
        Kind::File
    } else if format == SFlag::S_IFDIR {
        Kind::Dir
    } else if format == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Other
    }
}

/// Opens the directory `name` inside `dir`, refusing a symbolic link. With `create`, a missing
/// directory is made (mode `dir_mode`, owner `owner`) and the parent synced so it survives a crash;
/// without it, a missing directory gives `Ok(None)`. `rel` names the directory in messages.
pub(crate) fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &str,
    rel: &str,
    create: Option<(Mode, Option<Owner>)>,
) -> Result<Option<OwnedFd>, FsError> {
    let kind = kind_at(dir, name).map_err(|e| FsError::io("cannot inspect", rel, e))?;
    match (kind, create) {
        (Kind::Symlink, _) => return Err(Refusal::Symlink(rel.to_string()).into()),
        (Kind::Missing, None) => return Ok(None),
        (Kind::Missing, Some((mode, owner))) => {
            match mkdirat(dir, name, mode) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(FsError::io("cannot create directory", rel, e)),
            }
            let created = open_dir_nofollow(dir, name, rel)?;
            // mkdir applies the umask; the mode must be exactly the one asked for.
            fchmod(created.as_fd(), mode)
                .and_then(|()| Owner::apply(owner, created.as_fd()))
                .and_then(|()| fsync(dir))
                .map_err(|e| FsError::io("cannot set up directory", rel, e))?;
            return Ok(Some(created));
        }
        (Kind::Dir, _) => {}
        (Kind::File | Kind::Other, _) => {
            return Err(FsError::NotADirectory {
                rel: rel.to_string(),
            })
        }
    }
    open_dir_nofollow(dir, name, rel).map(Some)
}

fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &str, rel: &str) -> Result<OwnedFd, FsError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // Replaced by a link since it was inspected.
        Err(Errno::ELOOP) => Err(Refusal::Symlink(rel.to_string()).into()),
        Err(Errno::ENOTDIR) => Err(FsError::NotADirectory {
            rel: rel.to_string(),
        }),
        Err(e) => Err(FsError::io("cannot open directory", rel, e)),
    }
}

/// The names in an open directory (without `.` and `..`).
pub(crate) fn dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let raw = dir.try_clone_to_owned()?.into_raw_fd();
    // SAFETY: `raw` is a descriptor we own (a fresh duplicate); on success the stream owns it and
    // `closedir` closes it, on failure we close it ourselves.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let error = io::Error::last_os_error();
        // SAFETY: see above; the stream did not take the descriptor.
        unsafe { libc::close(raw) };
        return Err(error);
    }
    // The duplicate shares its read position with `dir`: start from the beginning whatever it is.
    // SAFETY: `stream` is a valid open directory stream until `closedir` below.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let result = loop {
        // `readdir` reports errors only through errno, and end of directory by leaving it alone.
        Errno::clear();
        // SAFETY: `stream` is valid; the entry is only read before the next `readdir` call.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break match Errno::last_raw() {
                0 => Ok(()),
                code => Err(io::Error::from_raw_os_error(code)),
            };
        }
        // SAFETY: `d_name` of an entry returned by `readdir` is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    };
    // SAFETY: `stream` is valid and not used afterwards.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::AT_FDCWD;
    use std::os::unix::fs::PermissionsExt;

    fn open_root(path: &std::path::Path) -> OwnedFd {
        openat(
            AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn directories_are_created_with_the_exact_mode_and_links_refused() {
        let root = tempfile::tempdir().unwrap();
        let fd = open_root(root.path());
        let mode = Mode::from_bits_truncate(0o770);
        let created = open_dir_at(fd.as_fd(), "new", "new", Some((mode, None)))
            .unwrap()
            .unwrap();
        let perms = std::fs::metadata(root.path().join("new"))
            .unwrap()
            .permissions();
        assert_eq!(perms.mode() & 0o7777, 0o770);
        assert!(open_dir_at(created.as_fd(), "absent", "new/absent", None)
            .unwrap()
            .is_none());

        std::os::unix::fs::symlink("/tmp", root.path().join("link")).unwrap();
        let err = open_dir_at(fd.as_fd(), "link", "x/link", Some((mode, None))).unwrap_err();
        assert_eq!(err.to_string(), "x/link is a symbolic link");
        std::fs::write(root.path().join("file"), "").unwrap();
        let err = open_dir_at(fd.as_fd(), "file", "x/file", None).unwrap_err();
        assert_eq!(err.to_string(), "x/file is not a directory");
    }

    #[test]
    fn names_are_listed_from_a_descriptor_every_time() {
        let root = tempfile::tempdir().unwrap();
        for name in ["a", ".b.tmp", "c"] {
            std::fs::write(root.path().join(name), "").unwrap();
        }
        let fd = open_root(root.path());
        for _ in 0..2 {
            let mut names = dir_names(fd.as_fd()).unwrap();
            names.sort();
            assert_eq!(names, vec![".b.tmp", "a", "c"]);
        }
        assert_eq!(kind_at(fd.as_fd(), "a").unwrap(), Kind::File);
        assert_eq!(kind_at(fd.as_fd(), "zz").unwrap(), Kind::Missing);
    }
}
