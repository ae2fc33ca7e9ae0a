//! `client.keys` as authd reads and writes it.
//!
//! One agent a line: `<id> <name> <ip> <key>`, the key being the rest of the line. A line whose
//! first character is `#` or a space is a comment. A name starting with `!` or `#` marks a removed
//! agent: such a line is kept verbatim only while removed keys are kept (authd's `<purge>no</purge>`),
//! but its id always counts towards the highest id ever used, from which new ids are allocated.
//!
//! Writing replaces the file atomically: a temporary file in the same directory, written and synced,
//! renamed over the old one, then the directory synced. A crash leaves the old file or the new one,
//! never a mixture.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::ip::AgentIp;

/// Largest `client.keys` read: far above any real deployment, small enough to hold in memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Longest line considered; authd's own reader splits longer ones.
const MAX_LINE: usize = 4096;
/// Agent ids have at most 8 digits (authd's id validation).
pub const MAX_ID_DIGITS: usize = 8;
/// Mode of a new `client.keys`, as Wazuh installs it.
const DEFAULT_MODE: u32 = 0o640;

/// One active agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The id as written (normally zero-padded to 3 digits).
    pub id: String,
    pub name: String,
    pub ip: AgentIp,
    pub key: String,
}

impl KeyEntry {
    /// The numeric id (the id text is validated on the way in).
    pub fn number(&self) -> u32 {
        parse_id(&self.id).unwrap_or(0)
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.id,
            self.name,
            self.ip.file_form(),
            self.key
        )
    }
}

/// A line that could not be understood; it is skipped (and not written back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The numeric value of an id of 1 to 8 digits.
pub fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > MAX_ID_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Names indexed to the entries that carry them, first one first (a file may repeat a name).
#[derive(Debug, Clone, Default)]
struct MultiIndex(HashMap<String, BTreeSet<u64>>);

impl MultiIndex {
    fn insert(&mut self, key: &str, seq: u64) {
        self.0.entry(key.to_owned()).or_default().insert(seq);
    }

    fn remove(&mut self, key: &str, seq: u64) {
        if let Some(set) = self.0.get_mut(key) {
            set.remove(&seq);
            if set.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn first(&self, key: &str) -> Option<u64> {
        self.0.get(key).and_then(|set| set.first().copied())
    }
}

/// The agents of `client.keys`, in file order, with the lookups authd makes.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    /// Entries by insertion sequence: iteration gives file order.
    entries: BTreeMap<u64, KeyEntry>,
    next_seq: u64,
    by_id: HashMap<u32, u64>,
    by_name: MultiIndex,
    by_addr: MultiIndex,
    /// Removed-agent lines, written after the active ones.
    removed: Vec<String>,
    /// Highest id ever seen or allocated.
    id_counter: u32,
    keep_removed: bool,
}

impl KeyStore {
    /// An empty store; `keep_removed` keeps removed agents as `!` lines.
    pub fn new(keep_removed: bool) -> KeyStore {
        KeyStore {
            keep_removed,
            ..KeyStore::default()
        }
    }

    /// Parses the text of a `client.keys`; bad lines are reported and skipped.
    pub fn parse(text: &str, keep_removed: bool) -> (KeyStore, Vec<LineProblem>) {
        let mut store = KeyStore::new(keep_removed);
        let mut problems = Vec::new();
        for (index, raw) in text.split_inclusive('\n').enumerate() {
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            if let Err(reason) = store.parse_line(line) {
                problems.push(LineProblem {
                    line: index + 1,
                    reason,
                });
            }
        }
        (store, problems)
    }

    fn parse_line(&mut self, line: &str) -> Result<(), &'static str> {
        if line.is_empty() || line.starts_with(['#', ' ']) {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            return Err("line too long");
        }
        let Some((id, rest)) = line.split_once(' ') else {
            return Err("missing fields");
        };
        let number = parse_id(id);
        if let Some(number) = number {
            self.id_counter = self.id_counter.max(number);
        }
        if rest.starts_with(['#', '!']) {
            if self.keep_removed {
                self.removed.push(line.to_owned());
            }
            return Ok(());
        }
        let Some(number) = number else {
            return Err("invalid agent id");
        };
        let mut fields = rest.splitn(3, ' ');
        let (Some(name), Some(ip), Some(key)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err("missing fields");
        };
        if name.is_empty() {
            return Err("missing agent name");
        }
        if key.is_empty() {
            return Err("missing key");
        }
        let Some(ip) = AgentIp::parse(ip) else {
            return Err("invalid IP address");
        };
        if self.by_id.contains_key(&number) {
            return Err("duplicate agent id");
        }
        self.insert(KeyEntry {
            id: id.to_owned(),
            name: name.to_owned(),
            ip,
            key: key.to_owned(),
        });
        Ok(())
    }

    /// Whether removed agents are kept as `!` lines.
    pub fn keeps_removed(&self) -> bool {
        self.keep_removed
    }

    /// Stops or starts keeping removed agents; stopping forgets the lines already kept.
    pub fn set_keep_removed(&mut self, keep: bool) {
        self.keep_removed = keep;
        if !keep {
            self.removed.clear();
        }
    }

    /// Number of active agents.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Active agents in file order.
    pub fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.values()
    }

    /// The removed-agent lines kept.
    pub fn removed_lines(&self) -> &[String] {
        &self.removed
    }

    /// Highest id ever used.
    pub fn id_counter(&self) -> u32 {
        self.id_counter
    }

    /// Raises the highest id ever used to at least `id`.
    pub fn note_id(&mut self, id: u32) {
        self.id_counter = self.id_counter.max(id);
    }

    /// Lowers or raises the counter (a rollback restores the value from before a batch).
    pub fn set_id_counter(&mut self, id: u32) {
        self.id_counter = id;
    }

    /// The next id authd would allocate, zero-padded to 3 digits; `None` once 8 digits are used up.
    pub fn allocate_id(&mut self) -> Option<String> {
        let next = self
            .id_counter
            .checked_add(1)
            .filter(|n| *n <= 99_999_999)?;
        self.id_counter = next;
        Some(format!("{next:03}"))
    }

    pub fn by_id(&self, id: u32) -> Option<&KeyEntry> {
        self.by_id.get(&id).and_then(|seq| self.entries.get(seq))
    }

    /// The first agent named `name`.
    pub fn by_name(&self, name: &str) -> Option<&KeyEntry> {
        self.by_name
            .first(name)
            .and_then(|seq| self.entries.get(&seq))
    }

    /// The first agent whose bare address is `addr`.
    pub fn by_addr(&self, addr: &str) -> Option<&KeyEntry> {
        self.by_addr
            .first(addr)
            .and_then(|seq| self.entries.get(&seq))
    }

    /// Appends an agent; its id must not be active already.
    pub fn insert(&mut self, entry: KeyEntry) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let number = entry.number();
        self.id_counter = self.id_counter.max(number);
        self.by_id.insert(number, seq);
        self.by_name.insert(&entry.name, seq);
        self.by_addr.insert(entry.ip.addr(), seq);
        self.entries.insert(seq, entry);
    }

    /// Removes an active agent. Unless `purge` (or removed keys are not kept), a `!` line keeps it
    /// in the file as removed, as authd does.
    pub fn remove(&mut self, id: u32, purge: bool) -> Option<KeyEntry> {
        let seq = self.by_id.remove(&id)?;
        let entry = self.entries.remove(&seq)?;
        self.by_name.remove(&entry.name, seq);
        self.by_addr.remove(entry.ip.addr(), seq);
        if self.keep_removed && !purge {
            self.removed.push(format!(
                "{} !{} {} {}",
                entry.id,
                entry.name,
                entry.ip.addr(),
                entry.key
            ));
        }
        Some(entry)
    }

    /// The file text: active agents, then removed ones.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 100);
        for entry in self.entries.values() {
            out.push_str(&entry.line());
            out.push('\n');
        }
        for line in &self.removed {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// What identifies one version of the file: a replaced or edited file changes at least one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// The stamp of the file at `path`; `None` when it does not exist.
    pub fn current(path: &Path) -> io::Result<Option<FileStamp>> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(FileStamp::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("file is not UTF-8 text")]
    NotText,
}

/// Reads `path`: `Ok(None)` when it does not exist; the stamp is taken from the open file.
pub fn read(path: &Path) -> Result<Option<(String, FileStamp)>, ReadError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file").into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| ReadError::NotText)?;
    Ok(Some((text, FileStamp::of(&meta))))
}

/// Replaces `path` with `contents` atomically and durably (an error means the old file is still in
/// place, untouched). The new file gets the old one's mode
/// (0640 when there was none) and, when running as root, its owner; a new file made by root
/// belongs to the `wazuh` group when it exists, so that Wazuh's daemons can read it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<FileStamp> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(&format!("{name}."))
        .tempfile_in(dir)?;
    let mode = old.as_ref().map_or(DEFAULT_MODE, |m| m.mode() & 0o7777);
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = match &old {
            Some(meta) => (Some(meta.uid()), Some(meta.gid())),
            None => (None, wazuh_gid()),
        };
        std::os::unix::fs::fchown(temp.as_file(), uid, gid)?;
    }
    temp.as_file_mut().write_all(contents)?;
    temp.as_file().sync_all()?;
    let stamp = FileStamp::of(&temp.as_file().metadata()?);
    temp.persist(path).map_err(|e| e.error)?;
    // The new file is in place whatever happens now; failing here would report as undone a change
    // that every reader already sees.
    if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::error!(
            "Cannot sync directory {} after replacing {name}: {error}",
            dir.display()
        );
    }
    Ok(stamp)
}

fn wazuh_gid() -> Option<u32> {
    nix::unistd::Group::from_name("wazuh")
        .ok()
        .flatten()
        .map(|group| group.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_active_removed_comments_and_bad_lines() {
        let text = format!(
            "001 web any {KEY}\n\
             # a comment\n\
             002 !old 10.0.0.2 {KEY}\n\
             \n\
             broken\n\
             003 db 10.0.0.0/8 key with spaces\n\
             0x4 bad any {KEY}\n\
             005 nokey any \n\
             001 again any {KEY}\n\
             006 badip 300.1.1.1 {KEY}\n\
             017 #gone any {KEY}\n"
        );
        let (store, problems) = KeyStore::parse(&text, false);
        assert_eq!(store.len(), 2);
        assert_eq!(store.by_name("web").map(|e| e.id.as_str()), Some("001"));
        assert_eq!(
            store.by_id(3).map(|e| e.key.as_str()),
            Some("key with spaces")
        );
        assert_eq!(store.by_addr("10.0.0.0").map(|e| e.number()), Some(3));
        assert_eq!(store.id_counter(), 17, "removed lines count towards ids");
        assert!(store.removed_lines().is_empty());
        let lines: Vec<_> = problems.iter().map(|p| (p.line, p.reason)).collect();
        assert_eq!(
            lines,
            vec![
                (5, "missing fields"),
                (7, "invalid agent id"),
                (8, "missing key"),
                (9, "duplicate agent id"),
                (10, "invalid IP address"),
            ]
        );
        assert_eq!(problems[0].to_string(), "line 5: missing fields");
    }

    #[test]
    fn render_round_trips_and_keeps_order() {
        let text = format!("002 b any {KEY}\n001 a 10.1.0.0/16 {KEY}\n003 !c any {KEY}\n");
        let (store, problems) = KeyStore::parse(&text, true);
        assert!(problems.is_empty());
        assert_eq!(store.render(), text);
        let (store, _) = KeyStore::parse(&text, false);
        assert_eq!(
            store.render(),
            format!("002 b any {KEY}\n001 a 10.1.0.0/16 {KEY}\n")
        );
    }

    #[test]
    fn remove_keeps_a_marker_unless_purged() {
        let text = format!("001 a 10.0.0.1/32 {KEY}\n002 b any {KEY}\n");
        let (mut store, _) = KeyStore::parse(&text, true);
        assert_eq!(store.remove(1, false).map(|e| e.name), Some("a".into()));
        assert_eq!(store.remove(1, false), None);
        assert!(store.by_name("a").is_none());
        assert!(store.by_addr("10.0.0.1").is_none());
        store.remove(2, true);
        assert_eq!(store.render(), format!("001 !a 10.0.0.1 {KEY}\n"));
    }

    #[test]
    fn allocation_follows_the_highest_id() {
        let (mut store, _) = KeyStore::parse(&format!("007 a any {KEY}\n"), false);
        assert_eq!(store.allocate_id().as_deref(), Some("008"));
        store.note_id(1000);
        assert_eq!(store.allocate_id().as_deref(), Some("1001"));
        store.set_id_counter(99_999_999);
        assert_eq!(store.allocate_id(), None);
    }

    #[test]
    fn duplicate_names_resolve_to_the_first_remaining() {
        let text = format!("001 a any {KEY}\n002 a any {KEY}\n");
        let (mut store, _) = KeyStore::parse(&text, false);
        assert_eq!(store.by_name("a").map(KeyEntry::number), Some(1));
        store.remove(1, true);
        assert_eq!(store.by_name("a").map(KeyEntry::number), Some(2));
    }

    #[test]
    fn atomic_write_keeps_mode_and_replaces_whole_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("client.keys");
        let stamp = write_atomic(&path, b"one\n").expect("first write");
        assert_eq!(
            fs::metadata(&path).expect("meta").mode() & 0o777,
            DEFAULT_MODE
        );
        assert_eq!(FileStamp::current(&path).expect("stat"), Some(stamp));
        fs::set_permissions(&path, Permissions::from_mode(0o600)).expect("chmod");
        let second = write_atomic(&path, b"two\n").expect("second write");
        assert_ne!(second, stamp);
        assert_eq!(fs::read(&path).expect("read"), b"two\n");
        assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o777, 0o600);
        let leftovers = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        let (text, read_stamp) = read(&path).expect("read").expect("exists");
        assert_eq!((text.as_str(), read_stamp), ("two\n", second));
        assert!(read(&dir.path().join("missing")).expect("read").is_none());
    }
}
