//! Exposition: a [`Scrape`] as Prometheus text or OpenMetrics, and the content
//! negotiation that picks one for an HTTP request.
//!
//! Both encoders produce the bytes prometheus_client 0.26 produces for the same merged
//! families (`exposition.generate_latest` and `openmetrics.exposition.generate_latest`),
//! including its escaping, float spelling (`floatToGoString`) and quirks.
//!
//! [`render`] is all an HTTP handler needs:
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::{Collector, Opts, Registry, expose};
//!
//! let registry = Registry::builder().dir(dir.path()).build()?;
//! registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc();
//! let scrape = Collector::new(dir.path())?.collect()?;
//!
//! // In the handler: pass the request's Accept and Accept-Encoding headers.
//! let page = expose::render(&scrape, Some("application/openmetrics-text; version=1.0.0"), None);
//! assert_eq!(page.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores");
//! assert_eq!(page.content_encoding, None);
//! assert_eq!(page.body, b"# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total 1.0\n# EOF\n");
//!
//! let page = expose::render(&scrape, None, Some("gzip, deflate"));
//! assert_eq!(page.content_type, "text/plain; version=0.0.4; charset=utf-8");
//! assert_eq!(page.content_encoding, Some("gzip"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Negotiation
//!
//! The media ranges of `Accept` are weighed by their `q`; among equal weights the
//! first wins (Python takes the first acceptable range whatever its weight; with
//! Prometheus's own `Accept` headers, which list ranges by decreasing weight, the two
//! agree):
//!
//! | range | answer | `Content-Type` |
//! |---|---|---|
//! | `application/openmetrics-text` without `version` | OpenMetrics | `application/openmetrics-text; version=1.0.0; charset=utf-8` |
//! | `application/openmetrics-text; version=1.x.y` (≥ 1.0.0) | OpenMetrics | `application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=E` |
//! | `text/plain; version=V`, V ≥ 1.0.0 | text | `text/plain; version=1.0.0; charset=utf-8; escaping=E` |
//! | anything else, or no header | text | `text/plain; version=0.0.4; charset=utf-8` |
//!
//! `E` is the range's `escaping` parameter (`allow-utf-8`, `underscores`, `dots`,
//! `values`; anything else or nothing means `underscores`), which decides how names
//! outside the legacy character set are written. OpenMetrics versions 0.0.1 and 2.x
//! are not offered (Python answers a 2.x request with a 1.0.0 body labelled 2.x).
//! The body is gzipped when `Accept-Encoding` lists `gzip` with a non-zero weight.

mod escape;
mod openmetrics;
mod template;
mod text;

use std::io::Write;

pub use openmetrics::encode_openmetrics;
pub use text::encode_text;

use crate::collect::{MetricFamily, Scrape};

/// The exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Prometheus text: the 0.0.4 body, also the 1.0.0 body.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

/// How names outside the legacy character set (`[a-zA-Z_:][a-zA-Z0-9_:]*`) are
/// written, as the `escaping` parameter of the content type names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Escaping {
    /// Names are written as they are, quoted when not legacy (`allow-utf-8`).
    AllowUtf8,
    /// Every invalid character becomes `_` (the default).
    #[default]
    Underscores,
    /// `.` becomes `_dot_`, `_` becomes `__`, other invalid characters `__`.
    Dots,
    /// `U__` prefix, `_` doubled, invalid characters as `_<hex code point>_`.
    Values,
}

impl Escaping {
    /// The scheme's name in a content type (`"allow-utf-8"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Escaping::AllowUtf8 => "allow-utf-8",
            Escaping::Underscores => "underscores",
            Escaping::Dots => "dots",
            Escaping::Values => "values",
        }
    }

    /// Parses an `escaping` parameter as Python does: an unknown value means
    /// [`Escaping::Underscores`]. Also accepts the `allow-utf8` spelling of one
    /// Prometheus documentation page.
    pub fn from_param(value: &str) -> Escaping {
        match value {
            "allow-utf-8" | "allow-utf8" => Escaping::AllowUtf8,
            "dots" => Escaping::Dots,
            "values" => Escaping::Values,
            _ => Escaping::Underscores,
        }
    }
}

/// What [`negotiate`] chose for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The body's format.
    pub format: Format,
    /// How non-legacy names are escaped.
    pub escaping: Escaping,
    /// The exact `Content-Type` header to send.
    pub content_type: &'static str,
    /// Whether to gzip the body (and send `Content-Encoding: gzip`).
    pub gzip: bool,
}

/// A response body ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The `Content-Type` header (always send it: Prometheus 3 fails a scrape without).
    pub content_type: &'static str,
    /// The `Content-Encoding` header, when the body is compressed.
    pub content_encoding: Option<&'static str>,
    /// The body.
    pub body: Vec<u8>,
}

/// `Content-Type` of text without a version request (what Python answers by default).
pub const CONTENT_TYPE_TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics requested without a version.
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn content_type(format: Format, escaping: Escaping) -> &'static str {
    match (format, escaping) {
        (Format::Text, Escaping::AllowUtf8) => "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
        (Format::Text, Escaping::Underscores) => "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
        (Format::Text, Escaping::Dots) => "text/plain; version=1.0.0; charset=utf-8; escaping=dots",
        (Format::Text, Escaping::Values) => "text/plain; version=1.0.0; charset=utf-8; escaping=values",
        (Format::OpenMetrics, Escaping::AllowUtf8) => {
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        }
        (Format::OpenMetrics, Escaping::Underscores) => {
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        }
        (Format::OpenMetrics, Escaping::Dots) => {
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=dots"
        }
        (Format::OpenMetrics, Escaping::Values) => {
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=values"
        }
    }
}

/// The parameters of one media range or coding: `(name, value)` with the name
/// lower-cased and quotes removed from the value.
fn params(range: &str) -> (String, impl Iterator<Item = (String, &str)>) {
    let mut parts = range.split(';');
    let head = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts.filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim();
        Some((k.trim().to_ascii_lowercase(), v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)))
    });
    (head, params)
}

/// A weight `q`, defaulting to 1; unparsable weights count as 0 (not acceptable).
fn weight(value: Option<&str>) -> f64 {
    match value {
        None => 1.0,
        Some(q) => q.parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0),
    }
}

/// A dotted version as integers; `None` unless every part is a number.
fn version(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|p| p.parse().ok()).collect()
}

/// Picks the format, escaping and `Content-Type` for a request's `Accept` header, and
/// whether to gzip from its `Accept-Encoding` header (see the module docs).
pub fn negotiate(accept: Option<&str>, accept_encoding: Option<&str>) -> Negotiated {
    let text_0_0_4 = (Format::Text, Escaping::Underscores, CONTENT_TYPE_TEXT_0_0_4);
    let mut best: Option<(f64, (Format, Escaping, &'static str))> = None;
    for range in accept.unwrap_or("").split(',') {
        let (media, params) = params(range);
        let (mut ver, mut esc, mut q) = (None, Escaping::Underscores, None);
        for (k, v) in params {
            match k.as_str() {
                "version" if ver.is_none() => ver = Some(v),
                "escaping" => esc = Escaping::from_param(v),
                "q" => q = Some(v),
                _ => {}
            }
        }
        let v1 = |v: &str| version(v).is_some_and(|v| v.as_slice() >= [1, 0, 0].as_slice());
        let choice = match media.as_str() {
            "application/openmetrics-text" => match ver {
                None => Some((Format::OpenMetrics, Escaping::Underscores, CONTENT_TYPE_OPENMETRICS)),
                Some(v) if v1(v) && version(v).is_some_and(|v| v[0] == 1) => {
                    Some((Format::OpenMetrics, esc, content_type(Format::OpenMetrics, esc)))
                }
                Some(_) => None,
            },
            "text/plain" => match ver {
                Some(v) if v1(v) => Some((Format::Text, esc, content_type(Format::Text, esc))),
                _ => Some(text_0_0_4),
            },
            "text/*" | "*/*" => Some(text_0_0_4),
            _ => None,
        };
        let q = weight(q);
        match choice {
            Some(choice) if q > 0.0 && best.is_none_or(|(b, _)| q > b) => best = Some((q, choice)),
            _ => {}
        }
    }
    let (format, escaping, content_type) = best.map_or(text_0_0_4, |(_, c)| c);
    let gzip = accept_encoding.unwrap_or("").split(',').any(|coding| {
        let (name, params) = params(coding);
        let q = params.filter(|(k, _)| k == "q").map(|(_, v)| v).next();
        name == "gzip" && weight(q) > 0.0
    });
    Negotiated { format, escaping, content_type, gzip }
}

/// Appends the exposition of `families` in `format` to `out`.
pub fn encode(families: &[MetricFamily], format: Format, escaping: Escaping, out: &mut String) {
    match format {
        Format::Text => encode_text(families, escaping, out),
        Format::OpenMetrics => encode_openmetrics(families, escaping, out),
    }
}

/// Appends the exposition of `scrape` in `format` to `out`: the bytes [`encode`]
/// writes for its families.
///
/// For a scrape made by a [`Collector`] they are written faster from the third render
/// of that collector's scrapes in a format and escaping on: the second's body, kept
/// without its values, is reused with the new values while the same families and
/// samples are exposed; a scrape that differs is written in full, and the body of the
/// render after it is kept instead (see the `template` module of the source). The
/// collector keeps up to four such bodies, one per format and escaping, the most
/// recently used.
/// [`render`] writes its body this way.
///
/// [`Collector`]: crate::Collector
pub fn encode_scrape(scrape: &Scrape, format: Format, escaping: Escaping, out: &mut String) {
    match &scrape.memo {
        Some(memo) => template::encode_kept(memo, &scrape.families, format, escaping, out),
        None => encode(&scrape.families, format, escaping, out),
    }
}

/// Room for the body of `families`: about one line of 64 bytes per sample and a few
/// per family, so that a large body is not copied again and again as it grows.
pub(crate) fn body_capacity(families: &[MetricFamily]) -> usize {
    let samples: usize = families.iter().map(|f| f.samples.len() + 4).sum();
    4096 + 64 * samples
}

/// Negotiates with the request's `Accept` and `Accept-Encoding` headers and renders
/// `scrape` accordingly: content type, encoding and body in one value any HTTP
/// framework can send. The body is written by [`encode_scrape`].
pub fn render(scrape: &Scrape, accept: Option<&str>, accept_encoding: Option<&str>) -> Rendered {
    let chosen = negotiate(accept, accept_encoding);
    let mut text = String::with_capacity(body_capacity(&scrape.families));
    encode_scrape(scrape, chosen.format, chosen.escaping, &mut text);
    if !chosen.gzip {
        return Rendered { content_type: chosen.content_type, content_encoding: None, body: text.into_bytes() };
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 4), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    gz.write_all(text.as_bytes()).expect("gzip into memory");
    let body = gz.finish().expect("gzip into memory");
    Rendered { content_type: chosen.content_type, content_encoding: Some("gzip"), body }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
        application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
        text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

    fn ct(accept: &str) -> &'static str {
        negotiate(Some(accept), None).content_type
    }

    #[test]
    fn content_types_match_pythons_choose_encoder() {
        assert_eq!(negotiate(None, None).content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(ct(""), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(ct("text/plain"), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(ct("text/plain;version=1.0.0"), "text/plain; version=1.0.0; charset=utf-8; escaping=underscores");
        assert_eq!(ct("application/openmetrics-text"), "application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert_eq!(
            ct(PROMETHEUS_3),
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        );
        assert_eq!(ct("application/openmetrics-text;version=0.0.1"), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(negotiate(Some(PROMETHEUS_3), None).format, Format::OpenMetrics);
        assert_eq!(negotiate(Some(PROMETHEUS_3), None).escaping, Escaping::AllowUtf8);
    }

    #[test]
    fn the_highest_weight_wins_and_ties_go_to_the_first() {
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"), None).format,
            Format::Text
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.5, application/openmetrics-text;version=1.0.0"), None).format,
            Format::OpenMetrics
        );
        assert_eq!(
            ct("application/openmetrics-text;q=0, text/plain;version=1.0.0;escaping=dots"),
            content_type(Format::Text, Escaping::Dots)
        );
        assert_eq!(ct("application/openmetrics-text; version=2.0.0"), CONTENT_TYPE_TEXT_0_0_4);
        assert_eq!(
            ct("Application/OpenMetrics-Text; Version=\"1.0.0\""),
            content_type(Format::OpenMetrics, Escaping::Underscores)
        );
    }

    #[test]
    fn gzip_only_when_accepted_with_weight() {
        assert!(negotiate(None, Some("gzip")).gzip);
        assert!(negotiate(None, Some("deflate, GZIP;q=0.5")).gzip);
        assert!(!negotiate(None, Some("gzip;q=0")).gzip);
        assert!(!negotiate(None, Some("identity")).gzip);
        assert!(!negotiate(None, None).gzip);
    }

    #[test]
    fn rendered_gzip_body_decompresses_to_the_text() {
        use std::io::Read;
        let scrape = Scrape::default();
        let page = render(&scrape, Some("application/openmetrics-text"), Some("gzip"));
        assert_eq!(page.content_encoding, Some("gzip"));
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&page.body[..]).read_to_string(&mut plain).unwrap();
        assert_eq!(plain, "# EOF\n");
    }
}
