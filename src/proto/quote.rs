//! Peer-supplied text in logs and error messages: at most a bounded prefix, so a peer cannot make
//! one log line (or one error reply) as long as a frame.

/// Characters of a peer's string quoted before it is cut.
pub const QUOTE_CHARS_MAX: usize = 200;

/// `text` as a log may show it: the first [`QUOTE_CHARS_MAX`] characters, and when cut, the
/// length of the whole.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS_MAX) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// [`quote`] for raw bytes (invalid UTF-8 shown as replacement characters).
pub fn quote_bytes(bytes: &[u8]) -> String {
    // Four bytes per character at most: enough input for the prefix, however it decodes.
    let head = &bytes[..bytes.len().min(QUOTE_CHARS_MAX * 4)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(QUOTE_CHARS_MAX) {
        None if head.len() == bytes.len() => text.into_owned(),
        None => format!("{text}… ({} bytes in all)", bytes.len()),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert_eq!(quote("queue/cluster/w1/p.zip"), "queue/cluster/w1/p.zip");
        let long = "a".repeat(5000);
        let shown = quote(&long);
        assert!(shown.starts_with(&"a".repeat(QUOTE_CHARS_MAX)));
        assert!(shown.ends_with("… (5000 bytes in all)"), "{shown}");
        assert!(shown.len() < 300);
        let multibyte = "é".repeat(300);
        assert!(quote(&multibyte).starts_with(&"é".repeat(QUOTE_CHARS_MAX)));
        let bytes = quote_bytes(&[b'x'; 10_000]);
        assert!(bytes.ends_with("… (10000 bytes in all)"), "{bytes}");
        assert!(bytes.len() < 300);
        assert_eq!(quote_bytes(b"\xffab"), "\u{fffd}ab");
    }
}
