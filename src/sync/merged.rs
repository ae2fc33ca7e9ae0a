//! The merged-file format (PROTOCOL.md §4.1.10): several small files of one directory carried as one
//! file, a concatenation of records
//!
//! ```text
//! <content length in bytes> SP <file name> SP <mtime> LF <content bytes>
//! ```
//!
//! The file name is the base name of the file (its directory is implied by the merge type, e.g.
//! `queue/agent-groups/`). The mtime is the file's modification time in UTC, `YYYY-MM-DD HH:MM:SS`, with
//! `.ffffff` only when the microseconds are not zero (Python's `str(datetime)`), and with `+00:00`
//! appended in the 4.14 dialect. Writing needs only `Write`; reading works on `Read` one record at a
//! time, each record's content held in memory (these are small per-agent files) under explicit limits.

use std::io::{self, BufRead, BufReader, Read, Write};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::paths::{safe_relative, PathError};
use crate::config::Dialect;

/// Longest header line accepted: a name of [`crate::sync::paths::PATH_BYTES_MAX`] bytes, a 20-digit
/// length, an mtime with microseconds and offset, spaces and the line end.
pub const HEADER_BYTES_MAX: usize = super::paths::PATH_BYTES_MAX + 64;

/// What went wrong writing or reading a merged file.
#[derive(Debug, thiserror::Error)]
pub enum MergedError {
    #[error("reading the merged file: {0}")]
    Read(#[source] io::Error),
    #[error("writing the merged file: {0}")]
    Write(#[source] io::Error),
    #[error("merged file name '{name}': {reason}")]
    Name { name: String, reason: NameProblem },
    #[error("modification time {mtime_s} cannot be written as a date between years 1 and 9999")]
    MtimeOutOfRange { mtime_s: f64 },
    #[error("merged file content of '{name}' has {got} bytes, {declared} were announced")]
    ContentLength {
        name: String,
        declared: u64,
        got: u64,
    },
    #[error("merged file header at byte {offset} is longer than {HEADER_BYTES_MAX} bytes")]
    HeaderTooLong { offset: u64 },
    #[error("merged file ends inside the header at byte {offset}")]
    HeaderUnterminated { offset: u64 },
    #[error("malformed merged file header at byte {offset} ({problem}): '{header}'")]
    MalformedHeader {
        offset: u64,
        problem: &'static str,
        header: String,
    },
    #[error(
        "merged file record '{name}' of {len} bytes is larger than the limit of {limit} bytes"
    )]
    RecordTooLarge { name: String, len: u64, limit: u64 },
    #[error("merged file is larger than the limit of {limit} bytes")]
    TotalTooLarge { limit: u64 },
    #[error("merged file has more than {limit} records")]
    TooManyRecords { limit: u64 },
    #[error("merged file ends inside '{name}': {got} of {expected} content bytes")]
    Truncated {
        name: String,
        expected: u64,
        got: u64,
    },
}

/// Why a record's file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("{0}")]
    Path(#[from] PathError),
    /// Names are base names: the record's directory comes from the merge type.
    #[error("not a base name")]
    NotBaseName,
    /// Leading dots are refused as stock 4.14 does: they would shadow the temporary names used when
    /// files are written.
    #[error("hidden name")]
    Hidden,
    /// Spaces and line ends would break the header.
    #[error("contains a space or line end")]
    Separator,
}

fn check_name(name: &str) -> Result<(), NameProblem> {
    safe_relative(name)?;
    if name.contains('/') {
        return Err(NameProblem::NotBaseName);
    }
    if name.starts_with('.') {
        return Err(NameProblem::Hidden);
    }
    if name.contains([' ', '\n', '\r']) {
        return Err(NameProblem::Separator);
    }
    Ok(())
}

/// The mtime text of a record: `mtime_s` (seconds since the epoch, as `stat` gives it) in UTC, rounded
/// to the microsecond half to even like Python's `datetime.utcfromtimestamp`.
pub fn mtime_text(mtime_s: f64, dialect: Dialect) -> Result<String, MergedError> {
    let out_of_range = || MergedError::MtimeOutOfRange { mtime_s };
    if !mtime_s.is_finite() {
        return Err(out_of_range());
    }
    let mut secs = mtime_s.trunc();
    let mut micros = ((mtime_s - secs) * 1e6).round_ties_even();
    if micros >= 1e6 {
        micros -= 1e6;
        secs += 1.0;
    } else if micros < 0.0 {
        micros += 1e6;
        secs -= 1.0;
    }
    // Years 1..=9999 span about ±3e11 s; anything wider is refused before converting.
    if secs.abs() > 1e12 {
        return Err(out_of_range());
    }
    let time = DateTime::from_timestamp(secs as i64, (micros as u32) * 1000)
        .ok_or_else(out_of_range)?
        .naive_utc();
    if !(1..=9999).contains(&time.year()) {
        return Err(out_of_range());
    }
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let micros = time.nanosecond() / 1000;
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    if dialect == Dialect::V4_14 {
        text.push_str("+00:00");
    }
    Ok(text)
}

/// Parses a record's mtime text in either dialect: `YYYY-MM-DD HH:MM:SS`, optionally `.` and one to six
/// digits of fraction, optionally `+00:00`.
pub fn parse_mtime(text: &str) -> Option<NaiveDateTime> {
    let text = text.strip_suffix("+00:00").unwrap_or(text);
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let b = whole.as_bytes();
    let shape_ok = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let num = |range: std::ops::Range<usize>| whole.get(range)?.parse::<u32>().ok();
    let micros = match fraction {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => {
            format!("{f:0<6}").parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_micro_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        micros,
    )
}

/// Writes records to a merged file.
pub struct MergedWriter<W: Write> {
    out: W,
    dialect: Dialect,
}

impl<W: Write> MergedWriter<W> {
    pub fn new(out: W, dialect: Dialect) -> MergedWriter<W> {
        MergedWriter { out, dialect }
    }

    /// Appends one file: its base name, its mtime in seconds since the epoch and its whole content.
    pub fn write_record(
        &mut self,
        name: &str,
        mtime_s: f64,
        content: &[u8],
    ) -> Result<(), MergedError> {
        self.write_header(name, mtime_s, content.len() as u64)?;
        self.out.write_all(content).map_err(MergedError::Write)
    }

    /// Appends one file whose content is read from `content`; exactly `len` bytes are copied (the length
    /// goes into the header first, so a file that shrank in the meantime is an error).
    pub fn write_record_from(
        &mut self,
        name: &str,
        mtime_s: f64,
        len: u64,
        content: &mut dyn Read,
    ) -> Result<(), MergedError> {
        self.write_header(name, mtime_s, len)?;
        let mut limited = content.take(len);
        let got = copy(&mut limited, &mut self.out)?;
        if got != len {
            return Err(MergedError::ContentLength {
                name: name.to_string(),
                declared: len,
                got,
            });
        }
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn into_inner(mut self) -> Result<W, MergedError> {
        self.out.flush().map_err(MergedError::Write)?;
        Ok(self.out)
    }

    fn write_header(&mut self, name: &str, mtime_s: f64, len: u64) -> Result<(), MergedError> {
        check_name(name).map_err(|reason| MergedError::Name {
            name: name.to_string(),
            reason,
        })?;
        let header = format!("{len} {name} {}\n", mtime_text(mtime_s, self.dialect)?);
        self.out
            .write_all(header.as_bytes())
            .map_err(MergedError::Write)
    }
}

/// Copies `from` to `to`, telling read errors from write errors.
fn copy(from: &mut dyn Read, to: &mut dyn Write) -> Result<u64, MergedError> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(MergedError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(MergedError::Write)?;
        total += n as u64;
    }
}

/// Bounds on what a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedLimits {
    /// Largest content of one record.
    pub record_bytes_max: u64,
    /// Largest merged file, headers included.
    pub total_bytes_max: u64,
    pub records_max: u64,
}

impl Default for MergedLimits {
    /// One agent-groups file per agent: small records, up to a few hundred thousand of them.
    fn default() -> MergedLimits {
        MergedLimits {
            record_bytes_max: 16 << 20,
            total_bytes_max: 1 << 30,
            records_max: 1_000_000,
        }
    }
}

/// One file taken out of a merged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedRecord {
    /// Base name, checked: joined to the merge type's directory it stays inside it.
    pub name: String,
    /// Modification time in UTC.
    pub mtime: NaiveDateTime,
    /// The mtime as written in the header.
    pub mtime_text: String,
    pub content: Vec<u8>,
}

/// Reads a merged file one record at a time. After an error the reader yields nothing more.
pub struct MergedReader<R: Read> {
    input: BufReader<R>,
    limits: MergedLimits,
    offset: u64,
    records: u64,
    failed: bool,
}

impl<R: Read> MergedReader<R> {
    pub fn new(input: R, limits: MergedLimits) -> MergedReader<R> {
        MergedReader {
            input: BufReader::new(input),
            limits,
            offset: 0,
            records: 0,
            failed: false,
        }
    }

    /// The next record, or `None` at the clean end of the file.
    pub fn next_record(&mut self) -> Result<Option<MergedRecord>, MergedError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.read_record();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn read_record(&mut self) -> Result<Option<MergedRecord>, MergedError> {
        let start = self.offset;
        let mut line = Vec::new();
        (&mut self.input)
            .take(HEADER_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(MergedError::Read)?;
        if line.is_empty() {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > HEADER_BYTES_MAX {
                MergedError::HeaderTooLong { offset: start }
            } else {
                MergedError::HeaderUnterminated { offset: start }
            });
        }
        line.pop();
        if self.records >= self.limits.records_max {
            return Err(MergedError::TooManyRecords {
                limit: self.limits.records_max,
            });
        }
        let (len, name, mtime_text, mtime) = parse_header(&line, start)?;
        if len > self.limits.record_bytes_max {
            return Err(MergedError::RecordTooLarge {
                name,
                len,
                limit: self.limits.record_bytes_max,
            });
        }
        let record_end = start + line.len() as u64 + 1 + len;
        if record_end > self.limits.total_bytes_max {
            return Err(MergedError::TotalTooLarge {
                limit: self.limits.total_bytes_max,
            });
        }
        // Capacity grows with what arrives, not with what the header announces.
        let mut content = Vec::with_capacity(len.min(64 * 1024) as usize);
        (&mut self.input)
            .take(len)
            .read_to_end(&mut content)
            .map_err(MergedError::Read)?;
        if (content.len() as u64) < len {
            return Err(MergedError::Truncated {
                name,
                expected: len,
                got: content.len() as u64,
            });
        }
        self.offset = record_end;
        self.records += 1;
        Ok(Some(MergedRecord {
            name,
            mtime,
            mtime_text,
            content,
        }))
    }
}

impl<R: Read> Iterator for MergedReader<R> {
    type Item = Result<MergedRecord, MergedError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Splits `<len> <name> <mtime>` (the mtime itself holds a space).
fn parse_header(
    line: &[u8],
    offset: u64,
) -> Result<(u64, String, String, NaiveDateTime), MergedError> {
    let malformed = |problem: &'static str| MergedError::MalformedHeader {
        offset,
        problem,
        header: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
    };
    let text = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8"))?;
    let (len, rest) = text.split_once(' ').ok_or_else(|| malformed("no name"))?;
    let (name, mtime_text) = rest.split_once(' ').ok_or_else(|| malformed("no mtime"))?;
    if len.is_empty() || len.len() > 20 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return Err(malformed("length is not a number"));
    }
    let len: u64 = len
        .parse()
        .map_err(|_| malformed("length is not a number"))?;
    check_name(name).map_err(|reason| MergedError::Name {
        name: name.to_string(),
        reason,
    })?;
    let mtime = parse_mtime(mtime_text).ok_or_else(|| malformed("mtime is not a date"))?;
    Ok((len, name.to_string(), mtime_text.to_string(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(dialect: Dialect, records: &[(&str, f64, &[u8])]) -> Vec<u8> {
        let mut w = MergedWriter::new(Vec::new(), dialect);
        for (name, mtime, content) in records {
            w.write_record(name, *mtime, content).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn read_all(bytes: &[u8], limits: MergedLimits) -> Result<Vec<MergedRecord>, MergedError> {
        MergedReader::new(bytes, limits).collect()
    }

    #[test]
    fn mtime_text_follows_python_str_of_datetime() {
        // 2020-11-23 10:51:23 UTC
        let t = 1606128683.0;
        assert_eq!(mtime_text(t, Dialect::V4_3).unwrap(), "2020-11-23 10:51:23");
        assert_eq!(
            mtime_text(t, Dialect::V4_14).unwrap(),
            "2020-11-23 10:51:23+00:00"
        );
        assert_eq!(
            mtime_text(t + 0.25, Dialect::V4_3).unwrap(),
            "2020-11-23 10:51:23.250000"
        );
        assert_eq!(
            mtime_text(t + 0.5, Dialect::V4_14).unwrap(),
            "2020-11-23 10:51:23.500000+00:00"
        );
        // Rounded to the microsecond, carrying into the seconds.
        assert_eq!(
            mtime_text(t + 0.9999999, Dialect::V4_3).unwrap(),
            "2020-11-23 10:51:24"
        );
        assert_eq!(
            mtime_text(0.0, Dialect::V4_3).unwrap(),
            "1970-01-01 00:00:00"
        );
        assert_eq!(
            mtime_text(-1.5, Dialect::V4_3).unwrap(),
            "1969-12-31 23:59:58.500000"
        );
        assert!(mtime_text(f64::NAN, Dialect::V4_3).is_err());
        assert!(mtime_text(1e15, Dialect::V4_3).is_err());
        assert!(mtime_text(253402300800.0, Dialect::V4_3).is_err()); // year 10000
    }

    #[test]
    fn records_round_trip_in_both_dialects() {
        for dialect in [Dialect::V4_3, Dialect::V4_14] {
            let bytes = merged(
                dialect,
                &[
                    ("001", 1606128683.0, b"default\n"),
                    ("002", 1606121448.123456, b"default,windows\n"),
                    ("003", 1606121448.0, b""),
                ],
            );
            let records = read_all(&bytes, MergedLimits::default()).unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!(records[0].name, "001");
            assert_eq!(records[0].content, b"default\n");
            assert_eq!(
                records[1].mtime,
                NaiveDate::from_ymd_opt(2020, 11, 23)
                    .unwrap()
                    .and_hms_micro_opt(8, 50, 48, 123456)
                    .unwrap()
            );
            assert_eq!(records[2].content, b"");
        }
        let bytes = merged(Dialect::V4_3, &[("001", 1606128683.0, b"default\n")]);
        assert_eq!(bytes, b"8 001 2020-11-23 10:51:23\ndefault\n");
        let bytes = merged(Dialect::V4_14, &[("001", 1606128683.0, b"x")]);
        assert_eq!(bytes, b"1 001 2020-11-23 10:51:23+00:00\nx");
    }

    #[test]
    fn streamed_content_must_have_the_announced_length() {
        let mut w = MergedWriter::new(Vec::new(), Dialect::V4_3);
        w.write_record_from("001", 0.0, 3, &mut &b"abcdef"[..])
            .unwrap();
        let err = w
            .write_record_from("002", 0.0, 5, &mut &b"ab"[..])
            .unwrap_err();
        assert!(matches!(
            err,
            MergedError::ContentLength {
                declared: 5,
                got: 2,
                ..
            }
        ));
        let bytes = w.into_inner().unwrap();
        assert!(bytes.starts_with(b"3 001 1970-01-01 00:00:00\nabc5 002"));
    }

    #[test]
    fn writer_refuses_names_that_break_the_format_or_escape() {
        let mut w = MergedWriter::new(Vec::new(), Dialect::V4_3);
        for (name, reason) in [
            ("a b", NameProblem::Separator),
            (
                "../x",
                NameProblem::Path(PathError::Component {
                    path: "../x".into(),
                    component: "..".into(),
                }),
            ),
            ("sub/x", NameProblem::NotBaseName),
            (".hidden", NameProblem::Hidden),
            ("", NameProblem::Path(PathError::Empty)),
        ] {
            match w.write_record(name, 0.0, b"") {
                Err(MergedError::Name { reason: r, .. }) => assert_eq!(r, reason, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn reader_parses_both_mtime_spellings() {
        for text in [
            "2020-11-23 10:51:23",
            "2020-11-23 10:51:23+00:00",
            "2020-11-23 10:51:23.5",
            "2020-11-23 10:51:23.500000+00:00",
        ] {
            assert!(parse_mtime(text).is_some(), "{text}");
        }
        for text in [
            "2020-11-23T10:51:23",
            "2020-11-23 10:51:23+01:00",
            "2020-11-23 10:51:23.",
            "2020-11-23 10:51:23.1234567",
            "2020-13-23 10:51:23",
            "2020-11-23 25:51:23",
            "20-11-23 10:51:23",
        ] {
            assert!(parse_mtime(text).is_none(), "{text}");
        }
    }

    #[test]
    fn hostile_headers_are_refused_precisely() {
        let limits = MergedLimits::default();
        let err = |bytes: &[u8]| read_all(bytes, limits).unwrap_err();
        assert!(matches!(
            err(b"8 001 2020-11-23 10:51:23"),
            MergedError::HeaderUnterminated { offset: 0 }
        ));
        assert!(matches!(
            err(b"x 001 2020-11-23 10:51:23\n"),
            MergedError::MalformedHeader {
                problem: "length is not a number",
                ..
            }
        ));
        assert!(matches!(
            err(b"-1 001 2020-11-23 10:51:23\n"),
            MergedError::MalformedHeader { .. }
        ));
        assert!(matches!(
            err(b"99999999999999999999 001 2020-11-23 10:51:23\n"),
            MergedError::MalformedHeader { .. }
        ));
        assert!(matches!(
            err(b"8 001\n"),
            MergedError::MalformedHeader {
                problem: "no mtime",
                ..
            }
        ));
        assert!(matches!(
            err(b"1 001 yesterday\nx"),
            MergedError::MalformedHeader {
                problem: "mtime is not a date",
                ..
            }
        ));
        assert!(matches!(
            err(b"1 .. 2020-11-23 10:51:23\nx"),
            MergedError::Name { .. }
        ));
        assert!(matches!(
            err(b"1 /etc/passwd 2020-11-23 10:51:23\nx"),
            MergedError::Name { .. }
        ));
        assert!(matches!(
            err(b"1 a/b 2020-11-23 10:51:23\nx"),
            MergedError::Name {
                reason: NameProblem::NotBaseName,
                ..
            }
        ));
        assert!(matches!(
            err(b"1 001 2020-11-23 10:51:23\nx\xff\xfe\n"),
            MergedError::MalformedHeader {
                offset: 27,
                problem: "not UTF-8",
                ..
            }
        ));
        let long = format!("1 {} 2020-11-23 10:51:23\n", "a".repeat(5000));
        assert!(matches!(
            err(long.as_bytes()),
            MergedError::HeaderTooLong { offset: 0 }
        ));
    }

    #[test]
    fn truncated_content_and_limits_are_errors() {
        let limits = MergedLimits::default();
        match read_all(b"8 001 2020-11-23 10:51:23\ndefa", limits) {
            Err(MergedError::Truncated {
                name,
                expected: 8,
                got: 4,
            }) => assert_eq!(name, "001"),
            other => panic!("{other:?}"),
        }
        let two = merged(
            Dialect::V4_3,
            &[("001", 0.0, b"aaaa"), ("002", 0.0, b"bbbb")],
        );
        let err = read_all(
            &two,
            MergedLimits {
                record_bytes_max: 3,
                ..limits
            },
        )
        .unwrap_err();
        assert!(matches!(err, MergedError::RecordTooLarge { len: 4, .. }));
        let err = read_all(
            &two,
            MergedLimits {
                records_max: 1,
                ..limits
            },
        )
        .unwrap_err();
        assert!(matches!(err, MergedError::TooManyRecords { limit: 1 }));
        let err = read_all(
            &two,
            MergedLimits {
                total_bytes_max: two.len() as u64 - 1,
                ..limits
            },
        )
        .unwrap_err();
        assert!(matches!(err, MergedError::TotalTooLarge { .. }));
        assert_eq!(
            read_all(
                &two,
                MergedLimits {
                    total_bytes_max: two.len() as u64,
                    ..limits
                }
            )
            .unwrap()
            .len(),
            2
        );
        // A huge announced length costs nothing before the bytes arrive.
        let err = read_all(b"1000000 001 2020-11-23 10:51:23\nabc", limits).unwrap_err();
        assert!(matches!(err, MergedError::Truncated { got: 3, .. }));
        // After an error the reader stops.
        let mut reader = MergedReader::new(&b"x\n1 001 2020-11-23 10:51:23\nx"[..], limits);
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
        assert!(read_all(b"", limits).unwrap().is_empty());
    }
}
