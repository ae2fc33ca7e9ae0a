//! Receive side of the long-string protocol (`new_str`, `str_upd`, `err_str`, PROTOCOL.md §2.5):
//! buffers the peer fills chunk by chunk and a later command consumes by id.

use std::collections::HashMap;

/// Limits of one connection's string buffers.
#[derive(Debug, Clone, Copy)]
pub struct StringLimits {
    /// Largest total a `new_str` may announce.
    pub string_bytes_max: usize,
    /// Buffers that may exist at once on one connection.
    pub strings_max: usize,
    /// Bytes all buffers of one connection may reserve together.
    pub total_bytes_max: usize,
}

impl Default for StringLimits {
    fn default() -> Self {
        StringLimits {
            string_bytes_max: 268_435_456,
            strings_max: 64,
            total_bytes_max: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    /// Answered with the command `error`, as stock nodes do.
    #[error("Requested size exceeds maximum allowed limit")]
    TooLarge,
    #[error("too many long strings are open on this connection (limit {0})")]
    TooMany(usize),
    #[error("malformed long-string request: {0}")]
    Malformed(String),
    #[error("string {0} couldn't be found")]
    Unknown(String),
}

struct Buffer {
    total: usize,
    data: Vec<u8>,
}

/// The long strings of one connection.
pub struct Strings {
    limits: StringLimits,
    buffers: HashMap<u32, Buffer>,
}

impl Strings {
    pub fn new(limits: StringLimits) -> Strings {
        Strings {
            limits,
            buffers: HashMap::new(),
        }
    }

    fn reserved(&self) -> usize {
        self.buffers.values().map(|b| b.total).sum()
    }

    /// `new_str <total>`: opens a buffer and returns its id. `id` is a fresh random u32.
    pub fn open(&mut self, payload: &[u8], id: u32) -> Result<u32, StringError> {
        let total = parse_len(payload)?;
        if total > self.limits.string_bytes_max {
            return Err(StringError::TooLarge);
        }
        if self.buffers.len() >= self.limits.strings_max {
            return Err(StringError::TooMany(self.limits.strings_max));
        }
        if self.reserved() + total > self.limits.total_bytes_max {
            return Err(StringError::TooLarge);
        }
        // Reserve lazily: a peer announcing a large size must still send the bytes.
        self.buffers.insert(
            id,
            Buffer {
                total,
                data: Vec::new(),
            },
        );
        Ok(id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.buffers.contains_key(&id)
    }

    /// `str_upd <id> <chunk>`: appends, silently dropping bytes beyond the announced total.
    pub fn update(&mut self, payload: &[u8]) -> Result<(), StringError> {
        let (id, chunk) = split_id(payload)?;
        let buffer = self
            .buffers
            .get_mut(&id)
            .ok_or_else(|| StringError::Unknown(id.to_string()))?;
        let room = buffer.total.saturating_sub(buffer.data.len());
        buffer
            .data
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        Ok(())
    }

    /// `err_str <total>`: deletes one still-empty buffer of that total; returns its id.
    pub fn abandon(&mut self, payload: &[u8]) -> Result<Option<u32>, StringError> {
        let total = parse_len(payload)?;
        let id = self
            .buffers
            .iter()
            .find(|(_, b)| b.total == total && b.data.first().is_none_or(|first| *first == 0))
            .map(|(id, _)| *id);
        if let Some(id) = id {
            self.buffers.remove(&id);
        }
        Ok(id)
    }

    /// Consumes a completed string by the id text a referencing command carries.
    pub fn take(&mut self, id_text: &str) -> Result<Vec<u8>, StringError> {
        let id: u32 = id_text
            .trim()
            .parse()
            .map_err(|_| StringError::Unknown(id_text.to_string()))?;
        self.buffers
            .remove(&id)
            .map(|b| b.data)
            .ok_or_else(|| StringError::Unknown(id_text.to_string()))
    }
}

fn parse_len(payload: &[u8]) -> Result<usize, StringError> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .ok_or_else(|| {
            StringError::Malformed(String::from_utf8_lossy(payload).chars().take(40).collect())
        })
}

fn split_id(payload: &[u8]) -> Result<(u32, &[u8]), StringError> {
    let space = payload
        .iter()
        .position(|b| *b == b' ')
        .ok_or_else(|| StringError::Malformed("str_upd without a string id".into()))?;
    let id = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or_else(|| StringError::Malformed("str_upd with a bad string id".into()))?;
    Ok((id, &payload[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_take() {
        let mut s = Strings::new(StringLimits::default());
        let id = s.open(b"10", 77).unwrap();
        s.update(b"77 hello").unwrap();
        s.update(b"77 world and more").unwrap();
        assert_eq!(s.take("77").unwrap(), b"helloworld");
        assert!(matches!(s.take("77"), Err(StringError::Unknown(_))));
        assert_eq!(id, 77);
    }

    #[test]
    fn limits_and_errors() {
        let limits = StringLimits {
            string_bytes_max: 100,
            strings_max: 1,
            total_bytes_max: 1000,
        };
        let mut s = Strings::new(limits);
        assert_eq!(s.open(b"101", 1), Err(StringError::TooLarge));
        assert!(matches!(s.open(b"abc", 1), Err(StringError::Malformed(_))));
        s.open(b"5", 1).unwrap();
        assert_eq!(s.open(b"5", 2), Err(StringError::TooMany(1)));
        assert!(matches!(s.update(b"9 x"), Err(StringError::Unknown(_))));
        assert_eq!(s.abandon(b"5").unwrap(), Some(1));
        assert_eq!(s.abandon(b"5").unwrap(), None);
    }
}
