//! Small text helpers shared by the command handlers.

use serde_json::Value;

/// The first 32 bytes of `input` (cut back to a character boundary), as wazuh-db quotes in errors.
pub fn near(input: &str) -> &str {
    let mut end = input.len().min(32);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    &input[..end]
}

/// The SQLite message of a failed statement, as wazuh-db appends to `Cannot execute Global database query; `.
pub fn sqlite_msg(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(code, Some(msg)) => {
            let _ = code;
            msg.clone()
        }
        rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
        other => other.to_string(),
    }
}

/// `err Cannot execute Global database query; <sqlite message>`.
pub fn query_failed(error: &rusqlite::Error) -> crate::store::WdbReply {
    crate::store::WdbReply::err(format!(
        "Cannot execute Global database query; {}",
        sqlite_msg(error)
    ))
}

/// A JSON number as the integer wazuh-db reads from it (fractions truncated), `None` for non-numbers.
pub fn int(value: Option<&Value>) -> Option<i64> {
    let value = value?;
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

/// Parses a leading decimal integer like C's `atoi`: optional sign, digits, anything after ignored.
pub fn atoi(input: &str) -> i64 {
    let input = input.trim_start();
    let (negative, digits) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    let mut value: i64 = 0;
    for byte in digits.bytes().take_while(u8::is_ascii_digit) {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(byte - b'0'));
    }
    if negative {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_cuts_at_32_bytes_on_a_boundary() {
        assert_eq!(near("short"), "short");
        assert_eq!(near(&"x".repeat(40)).len(), 32);
        let accented = format!("{}é", "x".repeat(31));
        assert_eq!(near(&accented), "x".repeat(31));
    }

    #[test]
    fn atoi_reads_leading_digits() {
        assert_eq!(atoi("12"), 12);
        assert_eq!(atoi(" 7 rest"), 7);
        assert_eq!(atoi("-3"), -3);
        assert_eq!(atoi("abc"), 0);
    }

    #[test]
    fn int_truncates_fractions() {
        assert_eq!(int(Some(&serde_json::json!(3.9))), Some(3));
        assert_eq!(int(Some(&serde_json::json!("3"))), None);
        assert_eq!(int(None), None);
    }
}
