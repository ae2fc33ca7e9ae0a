//! Running as the Wazuh user. A stock manager starts its daemons as root and each one drops to
//! `wazuh:wazuh`; the API and remoted, which run as that user, then reach the cluster's local socket
//! (`0660`, group `wazuh`). This daemon does the same: root does only what needs root (the lock,
//! the start-up clean-up, the listening port, the log file), hands the directories it prepared to
//! the user, and gives up root before any thread, ring, socket or database exists, so nothing is
//! created or run as root afterwards.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{self, Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "user '{0}' does not exist: create it, name another in `user` of etc/clusterd.toml, \
         or start with -r to run as root"
    )]
    NoUser(String),
    #[error(
        "group '{0}' does not exist: create it, name another in `group` of etc/clusterd.toml, \
         or start with -r to run as root"
    )]
    NoGroup(String),
    #[error("could not look up '{name}': {source}")]
    Lookup { name: String, source: nix::Error },
    #[error("could not give {path} to {user}:{group}: {source}")]
    Give {
        path: String,
        user: String,
        group: String,
        source: io::Error,
    },
    #[error("could not drop privileges to {user}:{group}: {source}")]
    Drop {
        user: String,
        group: String,
        source: nix::Error,
    },
}

/// The user and group the daemon runs as once it has dropped root.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: String,
    pub group: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Whether this start drops root: started as root without `-r`.
pub fn drops_root(keep_root: bool) -> bool {
    Uid::effective().is_root() && !keep_root
}

impl RunAs {
    /// Looks the names up; a missing one is a start-up error naming it.
    pub fn resolve(user: &str, group: &str) -> Result<RunAs, PrivilegeError> {
        let lookup = |name: &str| {
            let name = name.to_string();
            move |source| PrivilegeError::Lookup { name, source }
        };
        let uid = User::from_name(user)
            .map_err(lookup(user))?
            .ok_or_else(|| PrivilegeError::NoUser(user.to_string()))?
            .uid;
        let gid = Group::from_name(group)
            .map_err(lookup(group))?
            .ok_or_else(|| PrivilegeError::NoGroup(group.to_string()))?
            .gid;
        Ok(RunAs {
            user: user.to_string(),
            group: group.to_string(),
            uid,
            gid,
        })
    }

    /// Gives `path` to the user and group with `mode`, as a stock node has it (never following a
    /// symbolic link). A path that does not exist is left alone.
    pub fn give(&self, path: &Path, mode: u32) -> Result<(), PrivilegeError> {
        let failed = |source: io::Error| PrivilegeError::Give {
            path: path.display().to_string(),
            user: self.user.clone(),
            group: self.group.clone(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(e)),
        }
        std::os::unix::fs::lchown(path, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
            .map_err(failed)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)
    }

    /// Gives up root for good: supplementary groups, group, then user (in that order: once the
    /// user is not root, the groups could no longer be changed). Called while the process has one
    /// thread, so every thread started later runs as the user.
    pub fn enter(&self) -> Result<(), PrivilegeError> {
        let failed = |source| PrivilegeError::Drop {
            user: self.user.clone(),
            group: self.group.clone(),
            source,
        };
        unistd::setgroups(&[self.gid]).map_err(failed)?;
        unistd::setgid(self.gid).map_err(failed)?;
        unistd::setuid(self.uid).map_err(failed)?;
        if !self.uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(failed(nix::Error::EPERM));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_named() {
        let err = RunAs::resolve("no-such-user-clusterd", "root").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("user 'no-such-user-clusterd' does not exist"),
            "{err}"
        );
        let err = RunAs::resolve("root", "no-such-group-clusterd").unwrap_err();
        assert!(err.to_string().contains("group 'no-such-group-clusterd'"));
        let root = RunAs::resolve("root", "root").unwrap();
        assert!(root.uid.is_root());
    }
}
