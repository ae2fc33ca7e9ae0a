//! End-to-end tests of the writer through `tracing` events and the `clog_*!` macros.

use super::*;
use chrono::{Local, NaiveDate, TimeZone};
use flate2::read::MultiGzDecoder;
use std::fs;
use std::io::Read;
use std::sync::Mutex;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|day| day.and_hms_opt(h, mi, s))
        .expect("valid test date")
}

/// A clock the test moves by hand.
fn manual_clock(start: NaiveDateTime) -> (Arc<Mutex<NaiveDateTime>>, LogBuilderClock) {
    let now = Arc::new(Mutex::new(start));
    let reader = Arc::clone(&now);
    let clock = move || *reader.lock().expect("clock lock");
    (now, Box::new(clock))
}

type LogBuilderClock = Box<dyn Fn() -> NaiveDateTime + Send + Sync>;

/// Runs `f` with a subscriber writing `dir/logs/cluster.log` at `level` and returns the file.
fn capture(level: u8, f: impl FnOnce()) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/cluster.log");
    let (subscriber, guard) = LogBuilder::new(&path)
        .debug_level(level)
        .clock(|| at(2021, 3, 29, 7, 5, 26))
        .subscriber()
        .expect("subscriber");
    tracing::subscriber::with_default(subscriber, f);
    drop(guard);
    fs::read_to_string(&path).expect("read log")
}

#[test]
fn line_with_tags() {
    let text = capture(0, || {
        let t = 0.0161_f64;
        crate::clog_info!(
            "Worker worker1",
            "Integrity check",
            "Finished in {:.3}s. Sync required.",
            t
        );
    });
    assert_eq!(
        text,
        "2021/03/29 07:05:26 INFO: [Worker worker1] [Integrity check] Finished in 0.016s. Sync required.\n"
    );
}

#[test]
fn line_without_tags() {
    let text = capture(0, || tracing::warn!("plain {}", 1));
    assert_eq!(
        text,
        "2021/03/29 07:05:26 WARNING: [Cluster] [Main] plain 1\n"
    );
}

#[test]
fn tags_accept_owned_strings() {
    let text = capture(0, || {
        let tag = format!("Local {}", 734211);
        crate::clog_error!(tag, String::from("Keep alive"), "gone");
    });
    assert_eq!(
        text,
        "2021/03/29 07:05:26 ERROR: [Local 734211] [Keep alive] gone\n"
    );
}

fn every_level() {
    crate::clog_debug2!("T", "S", "d2");
    crate::clog_debug!("T", "S", "d");
    crate::clog_info!("T", "S", "i");
    crate::clog_warn!("T", "S", "w");
    crate::clog_error!("T", "S", "e");
}

fn levels_written(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.get(20..).and_then(|rest| rest.split(':').next()))
        .collect()
}

#[test]
fn debug_level_filtering() {
    assert_eq!(
        levels_written(&capture(0, every_level)),
        ["INFO", "WARNING", "ERROR"]
    );
    assert_eq!(
        levels_written(&capture(1, every_level)),
        ["DEBUG", "INFO", "WARNING", "ERROR"]
    );
    assert_eq!(
        levels_written(&capture(2, every_level)),
        ["DEBUG2", "DEBUG", "INFO", "WARNING", "ERROR"]
    );
}

#[test]
fn echo_gets_every_file_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.log");
    let echo = Shared::default();
    let (subscriber, _guard) = LogBuilder::new(&path)
        .echo_to(echo.clone())
        .subscriber()
        .expect("subscriber");
    tracing::subscriber::with_default(subscriber, || {
        crate::clog_info!("Master", "Main", "Serving on ('0.0.0.0', 1516)");
        // Each line must already be in the file while the writer is still alive.
        let now = fs::read_to_string(&path).expect("read");
        assert!(now.ends_with("INFO: [Master] [Main] Serving on ('0.0.0.0', 1516)\n"));
        crate::clog_debug!("Master", "Main", "filtered");
    });
    let file = fs::read(&path).expect("read");
    assert_eq!(*echo.0.lock().expect("lock"), file);
    assert_eq!(file.iter().filter(|b| **b == b'\n').count(), 1);
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    MultiGzDecoder::new(fs::File::open(path).expect("open archive"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

#[test]
fn rotates_at_midnight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/cluster.log");
    let (now, clock) = manual_clock(at(2024, 3, 31, 23, 59, 59));
    let (subscriber, guard) = LogBuilder::new(&path)
        .clock(clock)
        .subscriber()
        .expect("subscriber");
    tracing::subscriber::with_default(subscriber, || {
        crate::clog_info!("Master", "Main", "last of March");
        *now.lock().expect("clock lock") = at(2024, 4, 1, 0, 0, 1);
        crate::clog_info!("Master", "Main", "first of April");
    });
    guard.wait_archiver();

    let archive = dir.path().join("logs/cluster/2024/Mar/cluster.log-31.gz");
    assert_eq!(
        gunzip(&archive),
        "2024/03/31 23:59:59 INFO: [Master] [Main] last of March\n"
    );
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "2024/04/01 00:00:01 INFO: [Master] [Main] first of April\n"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("logs"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn file_from_an_earlier_day_is_rotated_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.log");
    fs::write(&path, "old line\n").expect("seed");
    let yesterday = Local
        .from_local_datetime(&at(2024, 2, 28, 12, 0, 0))
        .earliest()
        .expect("local time");
    fs::File::options()
        .append(true)
        .open(&path)
        .and_then(|f| f.set_modified(yesterday.into()))
        .expect("set mtime");

    let (subscriber, guard) = LogBuilder::new(&path)
        .clock(|| at(2024, 2, 29, 8, 0, 0))
        .subscriber()
        .expect("subscriber");
    tracing::subscriber::with_default(subscriber, || crate::clog_info!("A", "B", "new"));
    drop(guard);

    let archive = dir.path().join("cluster/2024/Feb/cluster.log-28.gz");
    assert_eq!(gunzip(&archive), "old line\n");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "2024/02/29 08:00:00 INFO: [A] [B] new\n"
    );
}

#[test]
fn appends_to_existing_file_of_today() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.log");
    fs::write(&path, "earlier\n").expect("seed");
    let (subscriber, _guard) = LogBuilder::new(&path).subscriber().expect("subscriber");
    tracing::subscriber::with_default(subscriber, || crate::clog_info!("A", "B", "later"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("earlier\n"), "{text}");
    assert!(text.ends_with(" INFO: [A] [B] later\n"), "{text}");
}

#[test]
fn empty_day_is_not_archived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.log");
    let (now, clock) = manual_clock(at(2024, 6, 1, 23, 0, 0));
    let (subscriber, guard) = LogBuilder::new(&path)
        .clock(clock)
        .subscriber()
        .expect("subscriber");
    *now.lock().expect("clock lock") = at(2024, 6, 2, 1, 0, 0);
    tracing::subscriber::with_default(subscriber, || crate::clog_info!("A", "B", "x"));
    drop(guard);
    assert!(!dir.path().join("cluster").exists());
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "2024/06/02 01:00:00 INFO: [A] [B] x\n"
    );
}

/// A writer whose bytes the test can read back (stands in for stderr).
#[derive(Clone, Default)]
pub(super) struct Shared(pub(super) Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
