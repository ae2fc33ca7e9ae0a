//! File plumbing shared by the jobs: package files under `queue/cluster/`, unpacking into a directory,
//! creating package writers per dialect.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Dialect;
use crate::sync::package::{self, zip, zlib, PackageSink, UnpackLimits, Unpacked};
use crate::sync::safe_relative;

/// Transfer files live here, relative to the install root.
const TRANSFER_DIR: &str = "queue/cluster/";

/// Resolves a transfer path the engine gave, refusing anything outside `queue/cluster/`.
pub(crate) fn transfer_path(home: &Path, rel: &str) -> Result<PathBuf, String> {
    let clean = safe_relative(rel).map_err(|e| format!("bad transfer path {rel}: {e}"))?;
    if !clean.starts_with(TRANSFER_DIR) {
        return Err(format!("transfer path {rel} is outside {TRANSFER_DIR}"));
    }
    Ok(home.join(clean))
}

/// The directory a package at `rel` is unpacked into (`<rel>dir`, as stock nodes name it).
pub(crate) fn unpack_dir(home: &Path, rel: &str) -> Result<PathBuf, String> {
    transfer_path(home, &format!("{rel}dir"))
}

/// Deletes a transfer file and its unpack directory; missing ones are fine.
pub(crate) fn remove_transfer(home: &Path, rel: &str) -> Result<(), String> {
    let file = transfer_path(home, rel)?;
    let dir = unpack_dir(home, rel)?;
    for result in [fs::remove_file(&file), fs::remove_dir_all(&dir)] {
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(format!("could not remove {}: {e}", file.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Creates a new package file (never following a symlink, never reusing a name).
pub(crate) fn create_package(home: &Path, rel: &str) -> Result<File, String> {
    let path = transfer_path(home, rel)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
    }
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("could not create {}: {e}", path.display()))
}

/// A package writer of the dialect's format: a real ZIP in 4.3, the zlib concatenation in 4.14.
pub(crate) enum PackageWriter {
    Zip(Box<zip::ZipPackageWriter<File>>),
    Zlib(zlib::ZlibPackageWriter<File>),
}

impl PackageWriter {
    pub(crate) fn new(
        dialect: Dialect,
        file: File,
        compress_level: u32,
        limit_bytes: u64,
    ) -> PackageWriter {
        match dialect {
            Dialect::V4_3 => PackageWriter::Zip(Box::new(zip::ZipPackageWriter::new(file))),
            Dialect::V4_14 => PackageWriter::Zlib(zlib::ZlibPackageWriter::new(
                file,
                compress_level,
                limit_bytes,
            )),
        }
    }

    pub(crate) fn add_file(
        &mut self,
        rel: &str,
        size: u64,
        content: &mut dyn io::Read,
    ) -> Result<package::AddOutcome, String> {
        match self {
            PackageWriter::Zip(w) => w.add_file(rel, size, content),
            PackageWriter::Zlib(w) => w.add_file(rel, size, content),
        }
        .map_err(|e| e.to_string())
    }

    /// Writes the metadata member and returns the package's size in bytes.
    pub(crate) fn finish(self, metadata_json: &[u8]) -> Result<u64, String> {
        let mut file = match self {
            PackageWriter::Zip(w) => w.finish(metadata_json),
            PackageWriter::Zlib(w) => w.finish(metadata_json),
        }
        .map_err(|e| e.to_string())?;
        file.flush().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        file.metadata().map(|m| m.len()).map_err(|e| e.to_string())
    }
}

/// Reads a received package of the dialect's format, giving its files to `sink`.
pub(crate) fn unpack(
    dialect: Dialect,
    path: &Path,
    max_zip_size: u64,
    sink: &mut dyn PackageSink,
) -> Result<Unpacked, String> {
    let file = File::open(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let limits = UnpackLimits::new(max_zip_size);
    match dialect {
        Dialect::V4_3 => zip::unpack(file, &limits, sink),
        Dialect::V4_14 => zlib::unpack(io::BufReader::new(file), &limits, sink),
    }
    .map_err(|e| e.to_string())
}

/// Unpacks the received package `rel` into its unpack directory and runs `work` on that directory and
/// the package's metadata bytes. The package and the directory are gone afterwards, whatever happened.
pub(crate) fn with_unpacked<T>(
    env: &crate::pool::SyncEnv,
    rel: &str,
    work: impl FnOnce(&Path, &[u8]) -> Result<T, String>,
) -> Result<T, String> {
    let received = transfer_path(&env.home, rel)?;
    let dir = unpack_dir(&env.home, rel)?;
    let result = DirSink::create(dir.clone()).and_then(|mut sink| {
        let unpacked = unpack(env.dialect, &received, env.max_zip_size, &mut sink)?;
        work(&dir, &unpacked.metadata)
    });
    let _ = fs::remove_file(&received);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Merges the files at `paths` (relative to the install root) into one merged file at `out`: one
/// record per file, named by its base name, with its mtime. Unreadable files are left out.
pub(crate) fn write_merged(
    home: &Path,
    dialect: Dialect,
    out: &Path,
    paths: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(), String> {
    let file = File::create(out).map_err(|e| format!("could not create {}: {e}", out.display()))?;
    let mut writer = crate::sync::merged::MergedWriter::new(io::BufWriter::new(file), dialect);
    for rel in paths {
        let source = home.join(rel.as_ref());
        let Ok(content) = fs::read(&source) else {
            continue;
        };
        let name = Path::new(rel.as_ref())
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        writer
            .write_record(name, mtime(&source), &content)
            .map_err(|e| e.to_string())?;
    }
    writer.into_inner().map(|_| ()).map_err(|e| e.to_string())
}

/// Modification time as float seconds, as stock nodes read it.
pub(crate) fn mtime(path: &Path) -> f64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes each member into a fresh directory, refusing to follow or overwrite anything.
pub(crate) struct DirSink {
    root: PathBuf,
    current: Option<(PathBuf, File)>,
}

impl DirSink {
    pub(crate) fn create(root: PathBuf) -> Result<DirSink, String> {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)
            .map_err(|e| format!("could not create {}: {e}", root.display()))?;
        Ok(DirSink {
            root,
            current: None,
        })
    }
}

impl PackageSink for DirSink {
    fn begin(&mut self, rel: &str) -> io::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        self.current = Some((path, file));
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Some((_, file)) => file.write_all(bytes),
            None => Err(io::Error::other("data outside a member")),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        self.current
            .take()
            .map_or(Ok(()), |(_, mut file)| file.flush())
    }

    fn abort(&mut self) {
        if let Some((path, _)) = self.current.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A sink for packages that must carry only metadata (a worker's integrity package).
pub(crate) struct MetadataOnly;

impl PackageSink for MetadataOnly {
    fn begin(&mut self, rel: &str) -> io::Result<()> {
        Err(io::Error::other(format!(
            "a metadata package must not carry files, found {rel}"
        )))
    }

    fn data(&mut self, _: &[u8]) -> io::Result<()> {
        Err(io::Error::other("unexpected file data"))
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn abort(&mut self) {}
}

/// The file of a local `send_file`: `path` must be absolute, inside `home`'s `queue/cluster/`
/// (the only place a receiving node writes to, so nothing else could arrive), clean (no `.` or
/// `..` parts) and a regular file that is not a symbolic link. Gives the path relative to `home`
/// and the size.
pub(crate) fn local_file(home: &std::path::Path, path: &str) -> Result<(String, u64), String> {
    let absolute = std::path::Path::new(path);
    if !absolute.is_absolute() {
        return Err(format!("{path} is not an absolute path"));
    }
    let rel = absolute
        .strip_prefix(home)
        .ok()
        .and_then(|rel| rel.to_str())
        .ok_or_else(|| format!("{path} is not inside {}", home.display()))?;
    crate::proto::files::receive_path(rel.as_bytes()).map_err(|_| {
        format!(
            "{path} is not inside {}: only files there can be received by a node",
            home.join(crate::proto::files::RECEIVE_DIR).display()
        )
    })?;
    let (_, meta) = crate::pool::hash::open_regular(absolute)
        .map_err(|e| format!("Error sending file. File not found: {path} ({e})"))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    Ok((rel.to_string(), meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_paths_stay_in_queue_cluster() {
        let home = Path::new("/var/ossec");
        assert!(transfer_path(home, "queue/cluster/w1/p.zip").is_ok());
        assert!(transfer_path(home, "etc/client.keys").is_err());
        assert!(transfer_path(home, "queue/cluster/../../etc/x").is_err());
        assert!(transfer_path(home, "/queue/cluster/x").is_err());
    }

    #[test]
    fn remove_transfer_deletes_file_and_unpack_dir() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(home.path().join("queue/cluster/w1/p.zipdir/etc")).unwrap();
        fs::write(home.path().join("queue/cluster/w1/p.zip"), b"x").unwrap();
        remove_transfer(home.path(), "queue/cluster/w1/p.zip").unwrap();
        assert!(!home.path().join("queue/cluster/w1/p.zip").exists());
        assert!(!home.path().join("queue/cluster/w1/p.zipdir").exists());
        remove_transfer(home.path(), "queue/cluster/w1/p.zip").unwrap();
    }
}
