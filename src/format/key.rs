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

use std::borrow::Cow;
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
#[non_exhaustive]
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
    let key = decode_key_ref(bytes)?;
    Ok(Key {
        metric_name: key.metric_name.into_owned(),
        sample_name: key.sample_name.into_owned(),
        labels: key.labels.into_iter().map(|(n, v)| (n.into_owned(), v.into_owned())).collect(),
        help: key.help.into_owned(),
    })
}

/// A decoded key like [`Key`], whose strings borrow from the key bytes when they hold
/// no escape sequence (as Python writes every ASCII name, value and help text), so
/// that decoding such a key allocates only its label list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// The family name (first element).
    pub metric_name: Cow<'a, str>,
    /// The sample name (second element).
    pub sample_name: Cow<'a, str>,
    /// Label pairs sorted by name, each name once (a name repeated in the JSON keeps
    /// its last value, as Python's `json.loads` does).
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The help text (fourth element).
    pub help: Cow<'a, str>,
}

/// Decodes a key as [`decode_key`] does, borrowing what it can.
///
/// Keys laid out exactly as Python's `json.dumps` writes them (the separators `", "`
/// and `": "`, label names in increasing order, no string holding `\` or a control
/// character) are split in place; any other key goes through a general JSON parser.
/// Both give the same result for the keys the first accepts.
///
/// # Errors
/// As [`decode_key`].
pub fn decode_key_ref(bytes: &[u8]) -> Result<KeyRef<'_>, KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| KeyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    if let Some(key) = (Plain { text, pos: 0 }).key() {
        return Ok(key);
    }
    let (metric_name, sample_name, labels, help): (String, String, BTreeMap<String, String>, String) =
        serde_json::from_str(text).map_err(|e| KeyError::NotAKey(e.to_string()))?;
    Ok(KeyRef {
        metric_name: Cow::Owned(metric_name),
        sample_name: Cow::Owned(sample_name),
        labels: labels.into_iter().map(|(n, v)| (Cow::Owned(n), Cow::Owned(v))).collect(),
        help: Cow::Owned(help),
    })
}

/// A reader of keys in Python's exact layout without escapes: `None` at the first
/// byte that leaves it, for the general parser to decide.
struct Plain<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Plain<'a> {
    fn key(mut self) -> Option<KeyRef<'a>> {
        self.literal("[")?;
        let metric_name = self.string()?;
        self.literal(", ")?;
        let sample_name = self.string()?;
        self.literal(", {")?;
        let mut labels: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        if !self.eat("}") {
            loop {
                let name = self.string()?;
                self.literal(": ")?;
                let value = self.string()?;
                // Strictly increasing (so sorted and without repeats), as `sort_keys`
                // writes them.
                if labels.last().is_some_and(|(last, _)| **last >= *name) {
                    return None;
                }
                labels.push((Cow::Borrowed(name), Cow::Borrowed(value)));
                if self.eat("}") {
                    break;
                }
                self.literal(", ")?;
            }
        }
        self.literal(", ")?;
        let help = self.string()?;
        self.literal("]")?;
        (self.pos == self.text.len()).then_some(KeyRef {
            metric_name: Cow::Borrowed(metric_name),
            sample_name: Cow::Borrowed(sample_name),
            labels,
            help: Cow::Borrowed(help),
        })
    }

    fn eat(&mut self, literal: &str) -> bool {
        let found = self.text.as_bytes()[self.pos..].starts_with(literal.as_bytes());
        if found {
            self.pos += literal.len();
        }
        found
    }

    fn literal(&mut self, literal: &str) -> Option<()> {
        self.eat(literal).then_some(())
    }

    /// A JSON string without escapes or control characters: its content.
    fn string(&mut self) -> Option<&'a str> {
        self.literal("\"")?;
        let rest = &self.text.as_bytes()[self.pos..];
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        // `"` is ASCII, so both ends are character boundaries.
        let content = &self.text[self.pos..self.pos + len];
        self.pos += len + 1;
        Some(content)
    }
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

    /// The general parser's answer, for comparison with the fast path.
    fn decode_general(bytes: &[u8]) -> Result<Key, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| KeyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
        let (metric_name, sample_name, labels, help): (String, String, BTreeMap<String, String>, String) =
            serde_json::from_str(text).map_err(|e| KeyError::NotAKey(e.to_string()))?;
        Ok(Key { metric_name, sample_name, labels: labels.into_iter().collect(), help })
    }

    #[test]
    fn plain_keys_are_borrowed_and_others_are_parsed_in_full() {
        let plain = decode_key_ref(br#"["m", "m_total", {"a": "x", "b": "y"}, "Help."]"#).unwrap();
        assert!(matches!(plain.metric_name, Cow::Borrowed("m")));
        assert!(matches!(plain.labels[1].1, Cow::Borrowed("y")));
        let cases: [&[u8]; 13] = [
            br#"["m", "m", {"b": "1", "a": "2"}, "h"]"#,
            br#"["m", "m", {"a": "1", "a": "2"}, "h"]"#,
            br#"["m","m",{},"h"]"#,
            br#"["m", "m", {}, "h"] "#,
            br#"["m", "m", {}, "h"]x"#,
            br#"["m", "m", {"a": "\n"}, "h"]"#,
            br#"["m", "m", {}, "h\u00e9"]"#,
            br#"["m", "m", {}]"#,
            br#"["m", "m", {}, "h", "x"]"#,
            br#"["m", "m", {"a": 1}, "h"]"#,
            br#"["m", "m", {"a": "x", }, "h"]"#,
            "[\"m\", \"m\", {\"a\": \"\u{1}\"}, \"h\"]".as_bytes(),
            "[\"\u{e9}\", \"m\", {\"\u{e9}\": \"\u{1F600}\"}, \"h\"]".as_bytes(),
        ];
        for bytes in cases {
            assert_eq!(decode_key(bytes), decode_general(bytes), "{}", String::from_utf8_lossy(bytes));
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_and_general_decoding_agree(
            metric in ".{0,8}",
            sample in ".{0,8}",
            labels in proptest::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
            help in ".{0,8}",
        ) {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let key = encode_key(&metric, &sample, &labels, &help);
            let decoded = decode_key(key.as_bytes());
            proptest::prop_assert_eq!(&decoded, &decode_general(key.as_bytes()));
            let decoded = decoded.unwrap();
            proptest::prop_assert_eq!(decoded.metric_name, metric);
            proptest::prop_assert_eq!(decoded.labels.len(), labels.len());
        }

        #[test]
        fn fast_and_general_decoding_agree_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            proptest::prop_assert_eq!(decode_key(&bytes).is_ok(), decode_general(&bytes).is_ok());
            if let Ok(key) = decode_key(&bytes) {
                proptest::prop_assert_eq!(key, decode_general(&bytes).unwrap());
            }
        }
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
