//! Pure formatting of one `cluster.log` line.
//!
//! Kept apart from the IO so the exact byte layout can be tested without files or clocks.

use chrono::{Datelike, NaiveDateTime, Timelike};
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;

/// TAG printed when an event carries no `tag` field (the daemon has not set a context yet).
pub const DEFAULT_TAG: &str = "Cluster";
/// SUBTAG printed when an event carries no `subtag` field.
pub const DEFAULT_SUBTAG: &str = "Main";

/// Level name as it appears in the file. `TRACE` is the cluster's extra `DEBUG2` level and
/// `WARN` keeps the long spelling used by the original daemon.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "DEBUG2",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// Most verbose level written for a `-d` count: 0 → INFO, 1 → DEBUG, 2 or more → DEBUG2.
pub fn max_level(debug_level: u8) -> LevelFilter {
    match debug_level {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// `YYYY/MM/DD HH:MM:SS LEVEL: [TAG] [SUBTAG] MESSAGE` plus a newline.
///
/// The timestamp is assembled by hand rather than with a chrono format string so that no
/// formatting error can ever surface while logging.
pub fn format_line(
    at: NaiveDateTime,
    level: &Level,
    tag: &str,
    subtag: &str,
    message: &str,
) -> String {
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02} {}: [{}] [{}] {}\n",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        level_name(level),
        tag,
        subtag,
        message
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2021, 3, 9)
            .and_then(|d| d.and_hms_milli_opt(h, m, s, ms))
            .expect("valid test date")
    }

    #[test]
    fn line_layout_is_exact() {
        let line = format_line(
            at(7, 5, 26, 999),
            &Level::INFO,
            "Worker worker1",
            "Integrity check",
            "Finished in 0.016s. Sync required.",
        );
        assert_eq!(
            line,
            "2021/03/09 07:05:26 INFO: [Worker worker1] [Integrity check] Finished in 0.016s. Sync required.\n"
        );
    }

    #[test]
    fn level_names() {
        assert_eq!(level_name(&Level::TRACE), "DEBUG2");
        assert_eq!(level_name(&Level::DEBUG), "DEBUG");
        assert_eq!(level_name(&Level::INFO), "INFO");
        assert_eq!(level_name(&Level::WARN), "WARNING");
        assert_eq!(level_name(&Level::ERROR), "ERROR");
    }

    #[test]
    fn debug_levels() {
        assert_eq!(max_level(0), LevelFilter::INFO);
        assert_eq!(max_level(1), LevelFilter::DEBUG);
        assert_eq!(max_level(2), LevelFilter::TRACE);
        assert_eq!(max_level(9), LevelFilter::TRACE);
    }
}
