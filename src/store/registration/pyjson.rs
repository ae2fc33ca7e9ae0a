//! The Wazuh master handles `sendsync` in Python; its error texts are Python's. This module gives
//! the same texts: JSON decoding errors, `json.dumps` output, value representations and type names
//! as they appear in exception messages, and UTF-8 decoding errors.

use serde_json::Value;

/// `json.dumps` output is shared with the agent-info payloads.
pub use crate::sync::pyjson::{repr_value as repr, to_string as dumps};

/// Nesting depth at which decoding gives up (the depth the JSON parser accepts).
const MAX_DEPTH: usize = 128;

enum Fail {
    At(&'static str, usize),
    Depth(&'static str),
}

/// The message of the decoding error Python raises for `text`, which is not valid JSON.
pub fn decode_error(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let fail = if chars.first() == Some(&'\u{feff}') {
        Fail::At("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
    } else {
        let start = skip_ws(&chars, 0);
        match value(&chars, start, 0) {
            Err(fail) => fail,
            Ok(end) => {
                let end = skip_ws(&chars, end);
                // Texts Python would decode but the JSON parser refuses (non-finite numbers) are
                // reported where their value starts.
                Fail::At(
                    if end < chars.len() {
                        "Extra data"
                    } else {
                        "Expecting value"
                    },
                    if end < chars.len() { end } else { start },
                )
            }
        }
    };
    match fail {
        Fail::At(message, pos) => position_message(message, &chars, pos),
        Fail::Depth(kind) => format!(
            "maximum recursion depth exceeded while decoding a JSON {kind} from a unicode string"
        ),
    }
}

fn position_message(message: &str, chars: &[char], pos: usize) -> String {
    let before = &chars[..pos.min(chars.len())];
    let line = before.iter().filter(|c| **c == '\n').count() + 1;
    let column = match before.iter().rposition(|c| *c == '\n') {
        Some(newline) => pos - newline,
        None => pos + 1,
    };
    format!("{message}: line {line} column {column} (char {pos})")
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], ' ' | '\t' | '\n' | '\r') {
        i += 1;
    }
    i
}

fn literal(s: &[char], i: usize, word: &str) -> bool {
    let word: Vec<char> = word.chars().collect();
    s.get(i..i + word.len()) == Some(&word[..])
}

/// Scans one value at `i`; the index after it.
fn value(s: &[char], i: usize, depth: usize) -> Result<usize, Fail> {
    let Some(&c) = s.get(i) else {
        return Err(Fail::At("Expecting value", i));
    };
    match c {
        '"' => string(s, i + 1),
        '{' if depth >= MAX_DEPTH => Err(Fail::Depth("object")),
        '[' if depth >= MAX_DEPTH => Err(Fail::Depth("array")),
        '{' => object(s, i + 1, depth + 1),
        '[' => array(s, i + 1, depth + 1),
        'n' if literal(s, i, "null") => Ok(i + 4),
        't' if literal(s, i, "true") => Ok(i + 4),
        'f' if literal(s, i, "false") => Ok(i + 5),
        _ => number(s, i).ok_or(Fail::At("Expecting value", i)),
    }
}

fn number(s: &[char], start: usize) -> Option<usize> {
    let digit = |i: usize| s.get(i).is_some_and(char::is_ascii_digit);
    let mut i = start;
    if s.get(i) == Some(&'-') {
        i += 1;
    }
    match s.get(i) {
        Some('0') => i += 1,
        Some('1'..='9') => {
            while digit(i) {
                i += 1;
            }
        }
        _ => return None,
    }
    if s.get(i) == Some(&'.') && digit(i + 1) {
        i += 2;
        while digit(i) {
            i += 1;
        }
    }
    if matches!(s.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some('+' | '-')) {
            j += 1;
        }
        if digit(j) {
            while digit(j) {
                j += 1;
            }
            i = j;
        }
    }
    Some(i)
}

fn hex4(s: &[char], at: usize) -> Option<u32> {
    let mut value = 0;
    for i in at..at + 4 {
        value = value * 16 + s.get(i)?.to_digit(16)?;
    }
    Some(value)
}

/// Scans a string whose opening quote is at `after - 1`; the index after its closing quote.
fn string(s: &[char], after: usize) -> Result<usize, Fail> {
    let begin = after - 1;
    let mut end = after;
    loop {
        let mut next = end;
        while next < s.len() && s[next] != '"' && s[next] != '\\' {
            if u32::from(s[next]) <= 0x1f {
                return Err(Fail::At("Invalid control character at", next));
            }
            next += 1;
        }
        match s.get(next) {
            Some('"') => return Ok(next + 1),
            Some('\\') => {}
            _ => return Err(Fail::At("Unterminated string starting at", begin)),
        }
        next += 1;
        let Some(&escape) = s.get(next) else {
            return Err(Fail::At("Unterminated string starting at", begin));
        };
        if escape != 'u' {
            if !matches!(escape, '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') {
                return Err(Fail::At("Invalid \\escape", next - 1));
            }
            end = next + 1;
            continue;
        }
        next += 1;
        end = next + 4;
        if end >= s.len() {
            return Err(Fail::At("Invalid \\uXXXX escape", next - 1));
        }
        let unit = hex4(s, next).ok_or(Fail::At("Invalid \\uXXXX escape", end - 5))?;
        if (0xd800..=0xdbff).contains(&unit)
            && end + 6 < s.len()
            && s[end] == '\\'
            && s[end + 1] == 'u'
        {
            let low = hex4(s, end + 2).ok_or(Fail::At("Invalid \\uXXXX escape", end + 1))?;
            if (0xdc00..=0xdfff).contains(&low) {
                end += 6;
            }
        }
    }
}

fn object(s: &[char], start: usize, depth: usize) -> Result<usize, Fail> {
    let mut i = skip_ws(s, start);
    if s.get(i) == Some(&'}') {
        return Ok(i + 1);
    }
    loop {
        if s.get(i) != Some(&'"') {
            return Err(Fail::At(
                "Expecting property name enclosed in double quotes",
                i,
            ));
        }
        i = skip_ws(s, string(s, i + 1)?);
        if s.get(i) != Some(&':') {
            return Err(Fail::At("Expecting ':' delimiter", i));
        }
        i = skip_ws(s, i + 1);
        i = skip_ws(s, value(s, i, depth)?);
        match s.get(i) {
            Some('}') => return Ok(i + 1),
            Some(',') => i = skip_ws(s, i + 1),
            _ => return Err(Fail::At("Expecting ',' delimiter", i)),
        }
    }
}

fn array(s: &[char], start: usize, depth: usize) -> Result<usize, Fail> {
    let mut i = skip_ws(s, start);
    if s.get(i) == Some(&']') {
        return Ok(i + 1);
    }
    loop {
        i = skip_ws(s, value(s, i, depth)?);
        match s.get(i) {
            Some(']') => return Ok(i + 1),
            Some(',') => i = skip_ws(s, i + 1),
            _ => return Err(Fail::At("Expecting ',' delimiter", i)),
        }
    }
}

/// The Python type name of a decoded JSON value.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's message for bytes that are not UTF-8.
pub fn utf8_error(bytes: &[u8], error: &std::str::Utf8Error) -> String {
    let at = error.valid_up_to();
    let byte = bytes.get(at).copied().unwrap_or(0);
    match error.error_len() {
        None if bytes.len() - at > 1 => format!(
            "'utf-8' codec can't decode bytes in position {at}-{}: unexpected end of data",
            bytes.len() - 1
        ),
        None => format!(
            "'utf-8' codec can't decode byte 0x{byte:02x} in position {at}: unexpected end of data"
        ),
        Some(_) => {
            let reason = if matches!(byte, 0x80..=0xc1 | 0xf5..=0xff) {
                "invalid start byte"
            } else {
                "invalid continuation byte"
            };
            format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {at}: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_errors_read_like_python() {
        let cases = [
            ("", "Expecting value: line 1 column 1 (char 0)"),
            ("  ", "Expecting value: line 1 column 3 (char 2)"),
            ("nope", "Expecting value: line 1 column 1 (char 0)"),
            (
                "{",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                "{'a': 1}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                r#"{"a" 1}"#,
                "Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
            (
                r#"{"a": 1 "b": 2}"#,
                "Expecting ',' delimiter: line 1 column 9 (char 8)",
            ),
            (r#"{"a": }"#, "Expecting value: line 1 column 7 (char 6)"),
            (
                r#"{"a": 1,}"#,
                "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)",
            ),
            ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
            ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
            (
                r#"{"a": "x"#,
                "Unterminated string starting at: line 1 column 7 (char 6)",
            ),
            (
                "\"a\tb\"",
                "Invalid control character at: line 1 column 3 (char 2)",
            ),
            (r#""\x""#, "Invalid \\escape: line 1 column 2 (char 1)"),
            (
                r#""\u12g4""#,
                "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
            ),
            ("{} x", "Extra data: line 1 column 4 (char 3)"),
            ("{}\n\n  x", "Extra data: line 3 column 3 (char 6)"),
            (
                "{\"é\": 1 x}",
                "Expecting ',' delimiter: line 1 column 9 (char 8)",
            ),
            (
                "\u{feff}{}",
                "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
            ),
            ("-", "Expecting value: line 1 column 1 (char 0)"),
            ("01", "Extra data: line 1 column 2 (char 1)"),
            ("NaN", "Expecting value: line 1 column 1 (char 0)"),
        ];
        for (text, expected) in cases {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text:?}");
            assert_eq!(decode_error(text), expected, "{text:?}");
        }
        let deep = "[".repeat(200);
        assert_eq!(
            decode_error(&deep),
            "maximum recursion depth exceeded while decoding a JSON array from a unicode string"
        );
    }

    #[test]
    fn dumps_matches_python_defaults() {
        let value = json!({"function": "add", "arguments": {"name": "é\"\n", "n": [1, -2.5, true, null], "e": {}}});
        assert_eq!(
            dumps(&value),
            r#"{"function": "add", "arguments": {"name": "\u00e9\"\n", "n": [1, -2.5, true, null], "e": {}}}"#
        );
        assert_eq!(dumps(&json!("😀\u{7f}")), r#""\ud83d\ude00\u007f""#);
    }

    #[test]
    fn floats_and_reprs() {
        for (f, text) in [
            (1.0, "1.0"),
            (-0.5, "-0.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123.456, "123.456"),
        ] {
            assert_eq!(crate::sync::pyjson::float_repr(f), text, "{f}");
        }
        assert_eq!(repr(&json!("x")), "'x'");
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(repr(&json!("a'\"b")), "'a\\'\"b'");
        assert_eq!(repr(&json!(null)), "None");
        assert_eq!(repr(&json!(5)), "5");
        assert_eq!(repr(&json!(true)), "True");
        assert_eq!(type_name(&json!(1.5)), "float");
        assert_eq!(type_name(&json!([])), "list");
    }

    #[test]
    fn utf8_errors() {
        let message = |bytes: &[u8]| {
            let error = std::str::from_utf8(bytes).expect_err("invalid");
            utf8_error(bytes, &error)
        };
        assert_eq!(
            message(b"ab\xff"),
            "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte"
        );
        assert_eq!(
            message(b"\xe4A"),
            "'utf-8' codec can't decode byte 0xe4 in position 0: invalid continuation byte"
        );
        assert_eq!(
            message(b"a\xe4"),
            "'utf-8' codec can't decode byte 0xe4 in position 1: unexpected end of data"
        );
        assert_eq!(
            message(b"\xe4\xb8"),
            "'utf-8' codec can't decode bytes in position 0-1: unexpected end of data"
        );
    }
}
