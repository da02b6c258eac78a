//! Names, label values and help text as prometheus_client 0.26 escapes them
//! (`openmetrics/exposition.py`: `escape_metric_name`, `escape_label_name`, `_escape`).
//!
//! Two Python quirks are kept on purpose, for byte-identical output:
//! * the legacy-name check is the regex `^[a-zA-Z_:][a-zA-Z0-9_:]*$` run with
//!   `re.match`, where `$` also matches before one final newline, so `"up\n"` counts
//!   as a legacy name;
//! * rune validity is per character index, so a digit is invalid only at index 0.

use super::Escaping;

fn is_legacy_label_rune(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c.is_ascii_digit() && i > 0)
}

fn is_legacy_metric_rune(c: char, i: usize) -> bool {
    is_legacy_label_rune(c, i) || c == ':'
}

/// `re.match(r'^[first][rest]*$', s)`, including `$` matching before a final `\n`.
fn matches_legacy(s: &str, first: impl Fn(u8) -> bool, rest: impl Fn(u8) -> bool) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s).as_bytes();
    match s.split_first() {
        Some((&c, tail)) => first(c) && tail.iter().all(|&c| rest(c)),
        None => false,
    }
}

/// Python's `_is_valid_legacy_metric_name`.
pub(crate) fn is_legacy_metric_name(s: &str) -> bool {
    matches_legacy(
        s,
        |c| c.is_ascii_alphabetic() || c == b'_' || c == b':',
        |c| c.is_ascii_alphanumeric() || c == b'_' || c == b':',
    )
}

/// Python's `_is_valid_legacy_labelname`: the label-name regex, and not reserved
/// (`__` prefix).
fn is_legacy_label_name(s: &str) -> bool {
    matches_legacy(s, |c| c.is_ascii_alphabetic() || c == b'_', |c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// Python's `_escape(s, escaping, valid_rune)`.
pub(crate) fn escape(out: &mut String, s: &str, escaping: Escaping, valid: fn(char, usize) -> bool) {
    match escaping {
        Escaping::AllowUtf8 => quoted_text(out, s, true),
        Escaping::Underscores => {
            out.extend(s.chars().enumerate().map(|(i, c)| if valid(c, i) { c } else { '_' }));
        }
        Escaping::Dots => {
            for (i, c) in s.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    '.' => out.push_str("_dot_"),
                    c if valid(c, i) => out.push(c),
                    _ => out.push_str("__"),
                }
            }
        }
        Escaping::Values => {
            use std::fmt::Write;
            out.push_str("U__");
            for (i, c) in s.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    c if valid(c, i) => out.push(c),
                    // A Rust `char` is never a surrogate, Python's `_FFFD_` case.
                    c => {
                        let _ = write!(out, "_{:x}_", u32::from(c));
                    }
                }
            }
        }
    }
}

/// Python's `escape_metric_name(s, escaping)`.
pub(crate) fn metric_name(out: &mut String, s: &str, escaping: Escaping) {
    name(out, s, escaping, is_legacy_metric_name(s), is_legacy_metric_rune);
}

/// Python's `escape_label_name(s, escaping)`.
pub(crate) fn label_name(out: &mut String, s: &str, escaping: Escaping) {
    name(out, s, escaping, is_legacy_label_name(s), is_legacy_label_rune);
}

/// The body both share: quoted when not legacy under `allow-utf-8`, unchanged when
/// legacy under `underscores` and `values`, escaped otherwise.
fn name(out: &mut String, s: &str, escaping: Escaping, legacy: bool, rune: fn(char, usize) -> bool) {
    if s.is_empty() {
        return;
    }
    match escaping {
        Escaping::AllowUtf8 if !legacy => {
            out.push('"');
            escape(out, s, escaping, rune);
            out.push('"');
        }
        Escaping::Underscores | Escaping::Values if legacy => out.push_str(s),
        _ => escape(out, s, escaping, rune),
    }
}

/// A sample name in an OpenMetrics sample line: Python escapes it with the
/// label-name rune set (so `:` becomes `_` under `underscores`).
pub(crate) fn om_sample_name(out: &mut String, s: &str, escaping: Escaping) {
    if escaping == Escaping::Underscores && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        // Fast path: nothing to change unless the first character is a digit.
        if !s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            out.push_str(s);
            return;
        }
    }
    escape(out, s, escaping, is_legacy_label_rune);
}

/// `\` → `\\`, newline → `\n`, and with `quote` also `"` → `\"`: label values (and,
/// with `quote`, OpenMetrics help); without `quote`, text-format help.
pub(crate) fn quoted_text(out: &mut String, s: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if special(b) {
            out.push_str(&s[start..i]);
            out.push_str(match b {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                _ => "\\\"",
            });
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, e: Escaping) -> String {
        let mut out = String::new();
        metric_name(&mut out, s, e);
        out
    }

    fn l(s: &str, e: Escaping) -> String {
        let mut out = String::new();
        label_name(&mut out, s, e);
        out
    }

    #[test]
    fn legacy_names_pass_through_underscores_and_values() {
        assert_eq!(m("app:jobs_total", Escaping::Underscores), "app:jobs_total");
        assert_eq!(m("app_jobs", Escaping::Values), "app_jobs");
        assert_eq!(m("app_jobs", Escaping::AllowUtf8), "app_jobs");
    }

    #[test]
    fn non_legacy_names_are_escaped_per_scheme() {
        assert_eq!(m("a.b-é", Escaping::Underscores), "a_b__");
        assert_eq!(m("a.b_c", Escaping::Dots), "a_dot_b__c");
        assert_eq!(m("a.b_c", Escaping::Values), "U__a_2e_b__c");
        assert_eq!(m("a.\"b", Escaping::AllowUtf8), "\"a.\\\"b\"");
        assert_eq!(m("1a", Escaping::Underscores), "_a");
        assert_eq!(l("la.bel", Escaping::Underscores), "la_bel");
        assert_eq!(l("a:b", Escaping::Underscores), "a_b");
    }

    #[test]
    fn a_final_newline_still_counts_as_legacy_like_pythons_regex() {
        assert!(is_legacy_metric_name("up\n"));
        assert!(!is_legacy_metric_name("up\n\n"));
        assert!(!is_legacy_metric_name("\n"));
        assert_eq!(m("up\n", Escaping::Underscores), "up\n");
        assert_eq!(m("up\n", Escaping::AllowUtf8), "up\\n");
    }

    #[test]
    fn reserved_label_names_are_not_legacy_but_escape_to_themselves() {
        assert!(!is_legacy_label_name("__x"));
        assert_eq!(l("__x", Escaping::Underscores), "__x");
        assert_eq!(l("__x", Escaping::AllowUtf8), "\"__x\"");
    }

    #[test]
    fn om_sample_names_use_label_runes() {
        let mut out = String::new();
        om_sample_name(&mut out, "a:b_total", Escaping::Underscores);
        assert_eq!(out, "a_b_total");
    }

    #[test]
    fn quoted_text_escapes_backslash_newline_and_optionally_quotes() {
        let mut out = String::new();
        quoted_text(&mut out, "a\\b\n\"c\"\t", true);
        assert_eq!(out, "a\\\\b\\n\\\"c\\\"\t");
        out.clear();
        quoted_text(&mut out, "a\\b\n\"c\"", false);
        assert_eq!(out, "a\\\\b\\n\"c\"");
    }
}
