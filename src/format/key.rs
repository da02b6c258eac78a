//! The entry key: the JSON text Python's `mmap_key` produces.
//!
//! ```text
//! json.dumps([metric_name, sample_name, {label: value, ...}, help], sort_keys=True)
//! ```
//!
//! With Python's defaults that is: separators `", "` and `": "`, label names sorted by
//! code point (which is byte order in UTF-8), and `ensure_ascii`: `"` and `\` and the
//! five short escapes `\n \r \t \b \f`, every other character outside `0x20..=0x7e`
//! as `\uXXXX` with lowercase hex, and characters beyond the BMP as a UTF-16
//! surrogate pair. `/` is not escaped. Example:
//!
//! ```text
//! ["m", "m", {"a": "x", "l": "\u00e4\u20ac\ud83d\ude00\"\\\n\t\u0001"}, "h\u00e9lp"]
//! ```
//!
//! Byte-identical keys matter: a writer that reopens a file finds its entries by the
//! raw key bytes, and the collector deduplicates on them before parsing.

use std::collections::BTreeMap;

/// Appends `s` as a JSON string literal, escaped exactly as Python's `ensure_ascii`
/// encoder does.
pub fn write_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let push_u = |out: &mut String, unit: u16| {
        out.push_str("\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((unit >> shift) & 0xf)] as char);
        }
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u(out, *unit);
                }
            }
        }
    }
    out.push('"');
}

/// Encodes a key. `labels` must already be sorted by name and free of duplicate
/// names (the metric layer guarantees both).
pub fn encode_key(metric_name: &str, sample_name: &str, labels: &[(&str, &str)], help: &str) -> String {
    debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "labels must be sorted");
    let mut out = String::with_capacity(
        16 + metric_name.len()
            + sample_name.len()
            + help.len()
            + labels.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>(),
    );
    out.push('[');
    write_json_str(&mut out, metric_name);
    out.push_str(", ");
    write_json_str(&mut out, sample_name);
    out.push_str(", {");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_json_str(&mut out, name);
        out.push_str(": ");
        write_json_str(&mut out, value);
    }
    out.push_str("}, ");
    write_json_str(&mut out, help);
    out.push(']');
    out
}

/// A decoded key, as the collector groups it: labels sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The family name (first element).
    pub metric_name: String,
    /// The sample name (second element), e.g. `x_total`, `x_bucket`.
    pub sample_name: String,
    /// Label pairs sorted by name; a name repeated in the JSON keeps its last value,
    /// as Python's `json.loads` does.
    pub labels: Vec<(String, String)>,
    /// The help text (fourth element).
    pub help: String,
}

/// Why a key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key bytes are not UTF-8.
    NotUtf8 {
        /// Offset of the first invalid byte within the key.
        valid_up_to: usize,
    },
    /// The key is not a JSON array `[str, str, {str: str}, str]`; the text says what
    /// the JSON parser found (a three-element key from prometheus_client < 0.16 lands here).
    NotAKey(String),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotUtf8 { valid_up_to } => {
                write!(f, "key is not UTF-8 (invalid byte at key offset {valid_up_to})")
            }
            KeyError::NotAKey(why) => write!(f, "key is not a JSON [metric, sample, {{labels}}, help] array: {why}"),
        }
    }
}

/// Decodes a key written by us or by Python.
pub fn decode_key(bytes: &[u8]) -> Result<Key, KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| KeyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    let (metric_name, sample_name, labels, help): (String, String, BTreeMap<String, String>, String) =
        serde_json::from_str(text).map_err(|e| KeyError::NotAKey(e.to_string()))?;
    Ok(Key { metric_name, sample_name, labels: labels.into_iter().collect(), help })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_python_json_dumps_byte_for_byte() {
        let key = encode_key("m", "m", &[("a", "x"), ("l", "ä€😀\"\\\n\t\u{1}")], "hélp");
        assert_eq!(key, r#"["m", "m", {"a": "x", "l": "\u00e4\u20ac\ud83d\ude00\"\\\n\t\u0001"}, "h\u00e9lp"]"#);
    }

    #[test]
    fn key_without_labels_has_empty_object() {
        assert_eq!(encode_key("req", "req_total", &[], "Requests."), r#"["req", "req_total", {}, "Requests."]"#);
    }

    #[test]
    fn del_and_slash_are_escaped_as_python_does() {
        let mut s = String::new();
        write_json_str(&mut s, "/\u{7f}\r\u{8}\u{c}");
        assert_eq!(s, r#""/\u007f\r\b\f""#);
    }

    #[test]
    fn decode_round_trips_and_sorts_labels() {
        let key = encode_key("m", "m_sum", &[("a", "1"), ("b", "é😀")], "h");
        let decoded = decode_key(key.as_bytes()).unwrap();
        assert_eq!(decoded.metric_name, "m");
        assert_eq!(decoded.sample_name, "m_sum");
        assert_eq!(decoded.labels, vec![("a".into(), "1".into()), ("b".into(), "é😀".into())]);
        assert_eq!(decoded.help, "h");
    }

    #[test]
    fn three_element_legacy_key_is_rejected() {
        assert!(matches!(decode_key(br#"["m", "m", {}]"#), Err(KeyError::NotAKey(_))));
    }

    #[test]
    fn invalid_utf8_key_is_rejected_with_offset() {
        assert_eq!(decode_key(b"[\"\xff\"]"), Err(KeyError::NotUtf8 { valid_up_to: 2 }));
    }
}
