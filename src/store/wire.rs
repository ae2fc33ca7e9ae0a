//! Framing of the classic wazuh-db socket (`queue/db/wdb`), as pure functions.
//!
//! Every message, in both directions, is a 4-byte little-endian length followed by that many bytes
//! of UTF-8 text. Replies are `<status> SP <payload>` or a bare `<status>`. Keeping this IO-free lets
//! the socket client and server share it and lets it be tested without sockets.

use super::{StoreError, WdbReply, WdbStatus, MAX_PAYLOAD};

/// Size of the length header.
pub const HEADER_LEN: usize = 4;

/// Largest message text accepted in either direction (wazuh-db's 64 KiB buffer).
pub const MAX_MESSAGE: usize = 65_536;

/// Frames one message (a command or a reply text).
pub fn encode(text: &str) -> Result<Vec<u8>, StoreError> {
    if text.len() >= MAX_MESSAGE {
        return Err(StoreError::TooLarge(text.len()));
    }
    let len = u32::try_from(text.len()).map_err(|_| StoreError::TooLarge(text.len()))?;
    let mut frame = Vec::with_capacity(HEADER_LEN + text.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(text.as_bytes());
    Ok(frame)
}

/// Frames a reply, refusing payloads past [`MAX_PAYLOAD`] as wazuh-db never sends them.
pub fn encode_reply(reply: &WdbReply) -> Result<Vec<u8>, StoreError> {
    if reply.payload.len() > MAX_PAYLOAD {
        return Err(StoreError::TooLarge(reply.payload.len()));
    }
    encode(&reply.to_text())
}

/// Reads the length announced by a header, if `buf` holds one; refuses oversized lengths.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, StoreError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut bytes = [0u8; HEADER_LEN];
    bytes.copy_from_slice(header);
    let len = u32::from_le_bytes(bytes) as usize;
    if len >= MAX_MESSAGE {
        return Err(StoreError::TooLarge(len));
    }
    Ok(Some(len))
}

/// Splits one complete frame off the front of `buf`: its text and the number of bytes consumed.
/// `Ok(None)` means more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(&str, usize)>, StoreError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(body).map_err(|_| StoreError::NotText)?;
    Ok(Some((text, HEADER_LEN + len)))
}

/// Decodes a buffer that must hold exactly one frame.
pub fn decode_exact(buf: &[u8]) -> Result<&str, StoreError> {
    match decode(buf)? {
        Some((text, used)) if used == buf.len() => Ok(text),
        Some(_) => Err(StoreError::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        }),
        None => {
            let need = frame_len(buf)?.map_or(HEADER_LEN, |len| HEADER_LEN + len);
            Err(StoreError::Truncated {
                have: buf.len(),
                need,
            })
        }
    }
}

/// Parses a reply text `<status>[ SP <payload>]`.
pub fn parse_reply(text: &str) -> Result<WdbReply, StoreError> {
    let (word, payload) = text.split_once(' ').unwrap_or((text, ""));
    let status = WdbStatus::parse(word)
        .ok_or_else(|| StoreError::BadStatus(text.chars().take(32).collect()))?;
    Ok(WdbReply::new(status, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_prefixes_little_endian_length() {
        let frame = encode("global get-agent-info 1").expect("frame");
        assert_eq!(&frame[..4], &[23, 0, 0, 0]);
        assert_eq!(&frame[4..], b"global get-agent-info 1");
    }

    #[test]
    fn decode_waits_for_whole_frame() {
        let frame = encode("ok []").expect("frame");
        assert_eq!(decode(&frame[..2]).expect("partial header"), None);
        assert_eq!(decode(&frame[..6]).expect("partial body"), None);
        assert_eq!(decode(&frame).expect("whole"), Some(("ok []", 9)));
    }

    #[test]
    fn decode_splits_back_to_back_frames() {
        let mut buf = encode("ok").expect("frame");
        buf.extend(encode("due [1]").expect("frame"));
        let (first, used) = decode(&buf).expect("first").expect("complete");
        assert_eq!(first, "ok");
        let (second, _) = decode(&buf[used..]).expect("second").expect("complete");
        assert_eq!(second, "due [1]");
    }

    #[test]
    fn oversized_and_invalid_frames_are_refused() {
        let header = (MAX_MESSAGE as u32).to_le_bytes();
        assert!(matches!(decode(&header), Err(StoreError::TooLarge(_))));
        let mut bad = 2u32.to_le_bytes().to_vec();
        bad.extend([0xff, 0xfe]);
        assert!(matches!(decode(&bad), Err(StoreError::NotText)));
        assert!(matches!(
            encode(&"x".repeat(MAX_MESSAGE)),
            Err(StoreError::TooLarge(_))
        ));
        let big = WdbReply::new(WdbStatus::Ok, "x".repeat(MAX_PAYLOAD + 1));
        assert!(matches!(encode_reply(&big), Err(StoreError::TooLarge(_))));
    }

    #[test]
    fn decode_exact_rejects_trailing_or_missing_bytes() {
        let mut frame = encode("ok").expect("frame");
        assert_eq!(decode_exact(&frame).expect("exact"), "ok");
        frame.push(b'x');
        assert!(decode_exact(&frame).is_err());
        assert!(decode_exact(&frame[..3]).is_err());
    }

    #[test]
    fn parse_reply_splits_status_and_payload() {
        let reply = parse_reply("due [{\"data\":[]}]").expect("reply");
        assert_eq!(reply.status, WdbStatus::Due);
        assert_eq!(reply.payload, "[{\"data\":[]}]");
        assert_eq!(parse_reply("ok").expect("bare"), WdbReply::ok());
        let err = parse_reply("err Invalid DB query syntax, near 'x'").expect("err");
        assert_eq!(err.payload, "Invalid DB query syntax, near 'x'");
        assert!(matches!(
            parse_reply("what?"),
            Err(StoreError::BadStatus(_))
        ));
    }

    #[test]
    fn encode_reply_round_trips() {
        let reply = WdbReply::new(WdbStatus::Ok, "[\"synced\"]");
        let frame = encode_reply(&reply).expect("frame");
        assert_eq!(
            parse_reply(decode_exact(&frame).expect("text")).expect("reply"),
            reply
        );
    }
}
