//! JSON text as Python's `json.dumps` writes it by default: `", "` and `": "` separators, characters
//! outside ASCII escaped as `\uXXXX`, floats in Python's spelling. Payloads a stock node builds this
//! way (agent-info strings, `syn_m_a_e` results) then read the same when we build them.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::Value;

/// `json.dumps(value)` as bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    // Writing a `Value` into memory cannot fail: keys are strings and numbers are finite.
    let _ = value.serialize(&mut serializer);
    out
}

/// `json.dumps(value)` as text.
pub fn to_string(value: &Value) -> String {
    // The formatter writes ASCII only.
    String::from_utf8_lossy(&to_vec(value)).into_owned()
}

/// Python's `repr()` of a float: shortest round-trip digits, `.0` on whole numbers, exponents for
/// very small or large magnitudes (`1e-05`, `1e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let text = format!("{f:e}");
        return match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        };
    }
    if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr()` of a string: single quotes unless only the other kind appears inside,
/// backslash escapes for quotes, backslashes and control characters. Stock nodes print error
/// lists and values this way; our log lines match theirs.
pub fn repr_str(s: &str) -> String {
    let quote = repr_quote(s);
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        repr_escape(&mut out, c, quote);
    }
    out.push(quote);
    out
}

/// Python's `repr()` of bytes: `b'...'`, with bytes outside ASCII as `\xNN`.
pub fn repr_bytes(raw: &[u8]) -> String {
    let quote = repr_quote(&String::from_utf8_lossy(raw));
    let mut out = String::with_capacity(raw.len() + 3);
    out.push('b');
    out.push(quote);
    for &b in raw {
        if b.is_ascii() {
            repr_escape(&mut out, char::from(b), quote);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a list of strings: `['a', "b'c"]`.
pub fn repr_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| repr_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Python's `repr()` of a decoded JSON value (`None`, `True`, `{'a': 1}`).
pub fn repr_value(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => float_repr(f),
            _ => n.to_string(),
        },
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(repr_value).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr_str(k), repr_value(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// The quote `repr()` picks: `'` unless the text holds `'` and no `"`.
fn repr_quote(text: &str) -> char {
    if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    }
}

fn repr_escape(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if c.is_control() => {
            let code = u32::from(c);
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{code:04x}"));
            }
        }
        c => out.push(c),
    }
}

struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    /// Unescaped runs of a string: printable ASCII goes as is, the rest (DEL and everything beyond
    /// ASCII) as UTF-16 `\uXXXX` escapes.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let printable = |c: char| (' '..='~').contains(&c);
        if fragment.chars().all(printable) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if printable(c) {
                writer.write_all(&[c as u8])?;
                continue;
            }
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_escapes_match_python() {
        let value = json!({"a": [1, 2, {"b": null}], "c": "x\"y\n", "d": true, "e": {}, "f": []});
        assert_eq!(
            to_string(&value),
            r#"{"a": [1, 2, {"b": null}], "c": "x\"y\n", "d": true, "e": {}, "f": []}"#
        );
        // json.dumps("é€😀") == '"\\u00e9\\u20ac\\ud83d\\ude00"'
        assert_eq!(to_string(&json!("é€😀")), r#""\u00e9\u20ac\ud83d\ude00""#);
        assert_eq!(to_string(&json!("\u{1f}\u{7f}")), r#""\u001f\u007f""#);
    }

    #[test]
    fn floats_read_like_python() {
        assert_eq!(to_string(&json!({"t": 0.0})), r#"{"t": 0.0}"#);
        assert_eq!(float_repr(2.0), "2.0");
        assert_eq!(float_repr(0.016), "0.016");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(123456.789), "123456.789");
    }
}
