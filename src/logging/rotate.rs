//! Midnight rotation: where a finished day goes and how it is compressed.
//!
//! A day's file `logs/cluster.log` ends up as `logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz`, the layout
//! other Wazuh tools expect. The live file is first renamed next to itself (fast, done while holding the
//! log lock) and compressed afterwards, so a large file never stalls the threads that log.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use flate2::write::GzEncoder;
use flate2::Compression;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Three-letter English month name (`Jan`..`Dec`) of a date.
fn month_abbr(day: NaiveDate) -> &'static str {
    MONTHS.get(day.month0() as usize).copied().unwrap_or("Jan")
}

/// Archive of the log of `day`: for `logs/cluster.log` and 2024-03-31 this is
/// `logs/cluster/2024/Mar/cluster.log-31.gz`.
pub fn archive_path(log_file: &Path, day: NaiveDate) -> PathBuf {
    let dir = log_file.parent().unwrap_or_else(|| Path::new(""));
    let stem = log_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = log_file
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(stem)
        .join(day.year().to_string())
        .join(month_abbr(day))
        .join(format!("{}-{:02}.gz", name, day.day()))
}

/// A free name for the renamed, not yet compressed file of `day` (`cluster.log.2024-03-31`, or with a
/// numeric suffix if an earlier one was left behind), so that nothing is ever overwritten.
pub fn staging_path(log_file: &Path, day: NaiveDate) -> PathBuf {
    let base = format!(
        "{}.{:04}-{:02}-{:02}",
        log_file.display(),
        day.year(),
        day.month(),
        day.day()
    );
    let mut candidate = PathBuf::from(&base);
    let mut n = 1u32;
    while candidate.exists() && n < 1000 {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Compresses `staged` into `archive` and removes `staged`.
///
/// An existing archive is appended to as a further gzip member (still a valid `.gz` whose content is
/// the concatenation), so a second rotation of the same day loses nothing. The staged file is only
/// removed once the archive is complete.
pub fn compress(staged: &Path, archive: &Path) -> io::Result<()> {
    if let Some(dir) = archive.parent() {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let mut input = File::open(staged)?;
    let output = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(archive)?;
    let mut encoder = GzEncoder::new(output, Compression::default());
    io::copy(&mut input, &mut encoder)?;
    let output = encoder.finish()?;
    // The creation mode is filtered by the umask; the archive must still be group-readable.
    let _ = output.set_permissions(Permissions::from_mode(0o640));
    fs::remove_file(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use std::io::Read;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    #[test]
    fn archive_layout() {
        let p = archive_path(Path::new("/var/ossec/logs/cluster.log"), day(2024, 3, 5));
        assert_eq!(
            p,
            Path::new("/var/ossec/logs/cluster/2024/Mar/cluster.log-05.gz")
        );
        let p = archive_path(Path::new("/x/logs/cluster.log"), day(2023, 12, 31));
        assert_eq!(p, Path::new("/x/logs/cluster/2023/Dec/cluster.log-31.gz"));
    }

    #[test]
    fn staging_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("cluster.log");
        let first = staging_path(&log, day(2024, 1, 2));
        assert_eq!(first, dir.path().join("cluster.log.2024-01-02"));
        fs::write(&first, "x").expect("write");
        assert_eq!(
            staging_path(&log, day(2024, 1, 2)),
            dir.path().join("cluster.log.2024-01-02.1")
        );
    }

    #[test]
    fn compress_appends_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staged = dir.path().join("staged");
        let archive = dir.path().join("cluster/2024/Jan/cluster.log-02.gz");
        fs::write(&staged, "one\n").expect("write");
        compress(&staged, &archive).expect("compress");
        assert!(!staged.exists());
        fs::write(&staged, "two\n").expect("write");
        compress(&staged, &archive).expect("compress");
        let mut text = String::new();
        MultiGzDecoder::new(File::open(&archive).expect("open"))
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text, "one\ntwo\n");
        let mode = fs::metadata(&archive).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
