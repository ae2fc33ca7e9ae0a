//! The file behind `cluster.log`: appends whole lines, rotates at local midnight, echoes to a
//! second writer in foreground mode, and never panics.
//!
//! Every line is written with a single unbuffered `write` on an `O_APPEND` descriptor, so other
//! processes reading the file see complete lines as soon as they are logged.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime};
use tracing::Level;

use super::line::format_line;
use super::rotate;

/// Source of the local wall-clock time; replaceable so rotation can be tested.
pub type Clock = Box<dyn Fn() -> NaiveDateTime + Send + Sync>;

/// The real local time.
pub fn local_clock() -> Clock {
    Box::new(|| Local::now().naive_local())
}

/// Shared by the tracing layer (which writes) and the [`super::LogGuard`] (which waits for the
/// last compression on shutdown).
pub struct Sink {
    clock: Clock,
    state: Mutex<State>,
}

struct State {
    path: PathBuf,
    /// `None` after a failed write or a rotation: the next line reopens (and so recreates) the file.
    file: Option<File>,
    /// Local date whose lines the current file holds; a line of a later date triggers rotation.
    day: NaiveDate,
    echo: Option<Box<dyn Write + Send>>,
    /// Set after an error has been reported, so a persistent failure is reported only once.
    failing: bool,
    /// Background compression of the previous day, if still running.
    archiver: Option<JoinHandle<()>>,
}

impl Sink {
    /// Opens (creating it and its directory if needed) the log file. Errors here are returned
    /// to the caller: a daemon that cannot open its log should not start.
    pub fn open(
        path: &Path,
        clock: Clock,
        echo: Option<Box<dyn Write + Send>>,
    ) -> io::Result<Sink> {
        let file = open_log(path)?;
        let today = clock().date();
        let day = file_day(&file).map_or(today, |d| d.min(today));
        Ok(Sink {
            clock,
            state: Mutex::new(State {
                path: path.to_path_buf(),
                file: Some(file),
                day,
                echo,
                failing: false,
                archiver: None,
            }),
        })
    }

    /// Formats and writes one line stamped with the current clock time.
    pub fn write_event(&self, level: &Level, tag: &str, subtag: &str, message: &str) {
        let mut state = self.lock();
        // Read the clock under the lock so lines in the file are in time order and the rotation
        // decision matches the line being written.
        let now = (self.clock)();
        if now.date() > state.day {
            state.rotate(now.date());
        }
        let line = format_line(now, level, tag, subtag, message);
        state.write_line(line.as_bytes());
    }

    /// Waits for a pending compression of a rotated file, if any.
    pub fn wait_archiver(&self) {
        let handle = self.lock().archiver.take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock must not silence logging.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn write_line(&mut self, line: &[u8]) {
        if let Some(echo) = self.echo.as_mut() {
            let _ = echo.write_all(line);
            let _ = echo.flush();
        }
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(line),
            None => open_log(&self.path).and_then(|mut file| {
                let written = file.write_all(line);
                self.file = Some(file);
                written
            }),
        };
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.file = None;
                if !self.failing {
                    self.failing = true;
                    report(&format!("cannot write to {}", self.path.display()), &e);
                }
            }
        }
    }

    /// Moves the finished day aside and starts compressing it; the next line opens a fresh file.
    fn rotate(&mut self, today: NaiveDate) {
        let ended = self.day;
        self.day = today;
        self.file = None;
        // An empty file (nothing logged that day) simply carries on as the new day's file.
        if fs::metadata(&self.path).is_ok_and(|meta| meta.len() == 0) {
            return;
        }
        let staged = rotate::staging_path(&self.path, ended);
        match fs::rename(&self.path, &staged) {
            Ok(()) => {}
            // Nothing was written that day (or the file was removed): nothing to archive.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                report(&format!("cannot rotate {}", self.path.display()), &e);
                return;
            }
        }
        if let Some(previous) = self.archiver.take() {
            let _ = previous.join();
        }
        let archive = rotate::archive_path(&self.path, ended);
        let (staged_bg, archive_bg) = (staged.clone(), archive.clone());
        let spawned = std::thread::Builder::new()
            .name("log-archive".into())
            .spawn(move || archive_day(&staged_bg, &archive_bg));
        match spawned {
            Ok(handle) => self.archiver = Some(handle),
            // No thread available: compress in place rather than leave the day uncompressed.
            Err(_) => archive_day(&staged, &archive),
        }
    }
}

fn archive_day(staged: &Path, archive: &Path) {
    if let Err(e) = rotate::compress(staged, archive) {
        report(&format!("cannot archive {}", staged.display()), &e);
    }
}

/// Opens `path` for appending, creating the file (mode 0660, group-writable as the Wazuh tools
/// expect) and its parent directory when missing.
fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir)?;
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o660)
        .open(path)?;
    // The creation mode is filtered by the umask; best effort, the file may belong to someone else.
    let _ = file.set_permissions(Permissions::from_mode(0o660));
    Ok(file)
}

/// Local date of the last modification of a non-empty log, i.e. the day its lines belong to, so a
/// file left from a previous day is rotated by the first line written today.
fn file_day(file: &File) -> Option<NaiveDate> {
    let meta = file.metadata().ok()?;
    if meta.len() == 0 {
        return None;
    }
    let modified = meta.modified().ok()?;
    Some(DateTime::<Local>::from(modified).date_naive())
}

/// Last-resort error channel: the log itself is what failed.
fn report(what: &str, err: &io::Error) {
    let _ = writeln!(io::stderr(), "clusterd: {what}: {err}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::Shared;

    fn noon() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 5, 6)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("valid test date")
    }

    #[test]
    fn creates_parent_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/cluster.log");
        let sink = Sink::open(&path, Box::new(noon), None).expect("open");
        sink.write_event(&Level::INFO, "Cluster", "Main", "hello");
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text, "2024/05/06 12:00:00 INFO: [Cluster] [Main] hello\n");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
    }

    #[test]
    fn recovers_after_file_disappears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        let path = logs.join("cluster.log");
        let sink = Sink::open(&path, Box::new(noon), None).expect("open");
        sink.write_event(&Level::INFO, "A", "B", "one");
        // Force a write error, then let the next line reopen the file.
        sink.lock().file = None;
        fs::remove_dir_all(&logs).expect("rm");
        fs::write(&logs, "not a directory").expect("block");
        sink.write_event(&Level::INFO, "A", "B", "lost");
        assert!(sink.lock().failing);
        fs::remove_file(&logs).expect("unblock");
        sink.write_event(&Level::INFO, "A", "B", "two");
        assert!(!sink.lock().failing);
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text, "2024/05/06 12:00:00 INFO: [A] [B] two\n");
    }

    #[test]
    fn echo_receives_same_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.log");
        let echo = Shared::default();
        let sink = Sink::open(&path, Box::new(noon), Some(Box::new(echo.clone()))).expect("open");
        sink.write_event(&Level::WARN, "Master", "Keep alive", "x");
        let file = fs::read(&path).expect("read");
        assert_eq!(*echo.0.lock().expect("lock"), file);
    }
}
