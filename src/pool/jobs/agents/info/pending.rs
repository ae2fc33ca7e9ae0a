//! The worker's agent-info string of the round under way, kept on disk until the master confirms
//! it. Reading marks the agents synced in the database, so a worker that dies between the read and
//! the master's `syn_m_a_e` would otherwise lose those changes for good (a disconnection is
//! reported once); the next daemon's first read sends the kept string again, merged with what is
//! newer. Sending a string twice is harmless: the newer record of an agent supersedes it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Where the string is kept, relative to the install root (beside wazuh-db's own `var/db`).
pub(crate) const PENDING_REL: &str = "var/db/cluster-agent-info.pending";

/// A kept string larger than this is not one this daemon wrote: it is ignored.
const PENDING_BYTES_MAX: u64 = 512 << 20;

fn path(home: &Path) -> PathBuf {
    home.join(PENDING_REL)
}

/// The string a previous daemon kept, if any.
pub(in crate::pool::jobs::agents) fn load(home: &Path) -> Option<Bytes> {
    let path = path(home);
    let len = fs::metadata(&path).ok()?.len();
    if len == 0 || len > PENDING_BYTES_MAX {
        return None;
    }
    fs::read(path).ok().map(Bytes::from)
}

/// Keeps `payload` (written whole or not at all), or forgets the kept string (`None`).
pub(in crate::pool::jobs::agents) fn store(
    home: &Path,
    payload: Option<&[u8]>,
) -> Result<(), String> {
    let path = path(home);
    let Some(payload) = payload else {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(describe(&path, &e)),
            _ => Ok(()),
        };
    };
    let dir = path.parent().expect("the path has a directory");
    let tmp = dir.join(".cluster-agent-info.pending.tmp");
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut file = fs::File::create(&tmp)?;
        file.write_all(payload)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        describe(&path, &e)
    })
}

fn describe(path: &Path, e: &std::io::Error) -> String {
    format!(
        "could not keep this round's agents in {} until the master confirms them: {e}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_string_is_read_back_replaced_and_forgotten() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(load(home.path()), None);
        store(home.path(), Some(b"first")).unwrap();
        store(home.path(), Some(b"second")).unwrap();
        assert_eq!(load(home.path()).as_deref(), Some(&b"second"[..]));
        store(home.path(), None).unwrap();
        assert_eq!(load(home.path()), None);
        store(home.path(), None).unwrap();
        let left: Vec<_> = fs::read_dir(home.path().join("var/db")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join("var"), b"not a directory").unwrap();
        let error = store(home.path(), Some(b"x")).unwrap_err();
        assert!(
            error.contains("var/db/cluster-agent-info.pending"),
            "{error}"
        );
    }
}
