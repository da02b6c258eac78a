//! Pushing merged metrics to a Prometheus
//! [Pushgateway](https://github.com/prometheus/pushgateway) (feature `http`), for
//! batch jobs whose workers exit before any scrape.
//!
//! ```no_run
//! use prometheus_multiproc::Collector;
//! use prometheus_multiproc::push::{PushConfig, PushMethod, push};
//!
//! let scrape = Collector::from_env()?.collect()?;
//! let config = PushConfig::new("http://127.0.0.1:9091", "nightly-import")
//!     .label("instance", "db-7")
//!     .method(PushMethod::Put);
//! assert_eq!(config.url()?, "http://127.0.0.1:9091/metrics/job/nightly-import/instance/db-7");
//! push(&scrape, &config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! The metrics go to the group named by the job and the grouping labels, at
//! `/metrics/job/JOB{/LABEL/VALUE}`, in Prometheus text format, as the Pushgateway
//! defines it:
//!
//! * [`PushMethod::Put`] (the default) **replaces the whole group**: metrics pushed
//!   earlier to the same group and absent now disappear;
//! * [`PushMethod::Post`] replaces only the metrics **with the same names** as those
//!   pushed, and keeps the group's other metrics.
//!
//! A value that is empty or holds a character other than `A-Z a-z 0-9 - . _ ~` (a `/`
//! above all) is sent base64url-encoded as `LABEL@base64/ENCODED` (`=` for the empty
//! string), which the Pushgateway decodes.
//!
//! Only `http://` gateways are supported; put a TLS-terminating proxy in front of a
//! gateway reached over an untrusted network.

use std::fmt;
use std::io;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

use crate::collect::Scrape;
use crate::expose::{self, CONTENT_TYPE_TEXT_0_0_4, Escaping, Format};
use crate::serve::BasicAuth;

/// How a push treats metrics already in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PushMethod {
    /// HTTP `PUT`: replace every metric of the group.
    #[default]
    Put,
    /// HTTP `POST`: replace only the metrics with the names pushed.
    Post,
}

/// Where and how to push: the gateway URL, the job, grouping labels, method,
/// credentials and a time limit.
#[derive(Debug, Clone)]
pub struct PushConfig {
    gateway: String,
    job: String,
    grouping: Vec<(String, String)>,
    method: PushMethod,
    timeout: Duration,
    basic_auth: Option<BasicAuth>,
}

impl PushConfig {
    /// Pushes to the gateway at `gateway` (`http://HOST:PORT`, optionally with a path
    /// prefix) under job `job`, with `PUT` and a 10 s time limit.
    pub fn new(gateway: impl Into<String>, job: impl Into<String>) -> PushConfig {
        PushConfig {
            gateway: gateway.into(),
            job: job.into(),
            grouping: Vec::new(),
            method: PushMethod::Put,
            timeout: Duration::from_secs(10),
            basic_auth: None,
        }
    }

    /// Adds a grouping label (in order; the URL lists them as given).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.grouping.push((name.into(), value.into()));
        self
    }

    /// `PUT` (replace the group) or `POST` (replace same-named metrics).
    pub fn method(mut self, method: PushMethod) -> Self {
        self.method = method;
        self
    }

    /// Time limit for the whole push: connecting, sending and reading the answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends these credentials (HTTP basic authentication).
    pub fn basic_auth(mut self, auth: BasicAuth) -> Self {
        self.basic_auth = Some(auth);
        self
    }

    /// The URL the push goes to.
    ///
    /// # Errors
    /// [`PushErrorKind::InvalidUrl`] for a gateway that is not `http://HOST[:PORT][/PREFIX]`;
    /// [`PushErrorKind::InvalidGroupingKey`] for an empty job, or a label name that is
    /// invalid, reserved (`__` prefix), `job`, or repeated.
    pub fn url(&self) -> Result<String, PushError> {
        let target = self.target()?;
        Ok(format!("http://{}{}", target.authority, target.path))
    }

    fn target(&self) -> Result<Target, PushError> {
        let bad_url =
            |expected: &'static str| PushError::new(PushErrorKind::InvalidUrl, &self.gateway).expected(expected);
        let uri: Uri = self.gateway.parse().map_err(|_| bad_url("a URL like http://HOST:PORT"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad_url("an http:// URL (https is not supported: use a TLS-terminating proxy)"));
            }
            _ => return Err(bad_url("a URL starting with http://")),
        }
        if uri.query().is_some() {
            return Err(bad_url("no query string"));
        }
        let authority = uri.authority().ok_or_else(|| bad_url("a host"))?;
        if authority.as_str().contains('@') {
            return Err(bad_url("no credentials in the URL (use basic auth settings)"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(80);

        if self.job.is_empty() {
            return Err(PushError::new(PushErrorKind::InvalidGroupingKey, "job").expected("a non-empty job name"));
        }
        let mut path = uri.path().trim_end_matches('/').to_owned();
        path.push_str("/metrics");
        push_segment(&mut path, "job", &self.job);
        for (i, (name, value)) in self.grouping.iter().enumerate() {
            let invalid = !is_label_name(name) || name.starts_with("__") || name == "job";
            if invalid || self.grouping[..i].iter().any(|(n, _)| n == name) {
                return Err(PushError::new(PushErrorKind::InvalidGroupingKey, name)
                    .expected("a label name [a-zA-Z_][a-zA-Z0-9_]*, not reserved, not `job`, given once"));
            }
            push_segment(&mut path, name, value);
        }
        Ok(Target { authority: authority.as_str().to_owned(), host, port, path })
    }
}

struct Target {
    authority: String,
    host: String,
    port: u16,
    path: String,
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends `/NAME/VALUE`, or `/NAME@base64/BASE64URL(VALUE)` when the value is empty
/// or not made of URL-unreserved characters only.
fn push_segment(path: &mut String, name: &str, value: &str) {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    path.push('/');
    path.push_str(name);
    if plain && value != "." && value != ".." {
        path.push('/');
        path.push_str(value);
    } else if value.is_empty() {
        path.push_str("@base64/=");
    } else {
        path.push_str("@base64/");
        path.push_str(&base64::engine::general_purpose::URL_SAFE.encode(value));
    }
}

/// What went wrong pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushErrorKind {
    /// The gateway URL is not usable.
    InvalidUrl,
    /// The job or a grouping label is not usable.
    InvalidGroupingKey,
    /// The gateway could not be reached, or the exchange failed midway.
    Connect,
    /// The push took longer than its time limit.
    Timeout,
    /// The gateway answered with a status other than 2xx.
    Rejected,
    /// No runtime could be started for the push.
    Runtime,
}

/// A failed push: a kind, the URL or setting at fault, and the gateway's answer or the
/// underlying error.
#[derive(Debug)]
pub struct PushError {
    kind: PushErrorKind,
    subject: String,
    expected: Option<&'static str>,
    status: Option<u16>,
    message: Option<String>,
    source: Option<io::Error>,
}

impl PushError {
    fn new(kind: PushErrorKind, subject: &str) -> PushError {
        PushError { kind, subject: subject.to_owned(), expected: None, status: None, message: None, source: None }
    }

    fn expected(mut self, expected: &'static str) -> PushError {
        self.expected = Some(expected);
        self
    }

    fn caused_by(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PushError {
        self.source = Some(io::Error::other(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> PushErrorKind {
        self.kind
    }

    /// The gateway's HTTP status, for [`PushErrorKind::Rejected`].
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The start of the gateway's answer (at most 1 KiB), for
    /// [`PushErrorKind::Rejected`].
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PushErrorKind::InvalidUrl => write!(f, "invalid Pushgateway URL {:?}", self.subject)?,
            PushErrorKind::InvalidGroupingKey => write!(f, "invalid grouping key {:?}", self.subject)?,
            PushErrorKind::Connect => write!(f, "cannot push to {}", self.subject)?,
            PushErrorKind::Timeout => write!(f, "push to {} timed out", self.subject)?,
            PushErrorKind::Rejected => write!(f, "{} rejected the push", self.subject)?,
            PushErrorKind::Runtime => write!(f, "cannot start the runtime to push to {}", self.subject)?,
        }
        if let Some(expected) = self.expected {
            write!(f, ": expected {expected}")?;
        }
        if let Some(status) = self.status {
            write!(f, ": HTTP {status}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {}", message.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for PushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Pushes `scrape`, in Prometheus text format, to the group `config` names. Blocks
/// until the gateway answers or the time limit passes.
///
/// This starts a small runtime of its own: call it from synchronous code (in async
/// code, from `spawn_blocking`).
///
/// # Errors
/// [`PushErrorKind::InvalidUrl`] or [`PushErrorKind::InvalidGroupingKey`] before
/// anything is sent; [`PushErrorKind::Connect`] or [`PushErrorKind::Timeout`] naming
/// the URL; [`PushErrorKind::Rejected`] with the gateway's status and message.
pub fn push(scrape: &Scrape, config: &PushConfig) -> Result<(), PushError> {
    let target = config.target()?;
    let url = format!("http://{}{}", target.authority, target.path);
    let mut body = String::with_capacity(4096);
    expose::encode(&scrape.families, Format::Text, Escaping::Underscores, &mut body);
    let method = match config.method {
        PushMethod::Put => Method::PUT,
        PushMethod::Post => Method::POST,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&target.path)
        .header(header::HOST, &target.authority)
        .header(header::CONTENT_TYPE, CONTENT_TYPE_TEXT_0_0_4)
        .header(header::USER_AGENT, concat!("prometheus-multiproc/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| PushError::new(PushErrorKind::InvalidUrl, &url).caused_by(e))?;
    if let Some(auth) = &config.basic_auth {
        let value = HeaderValue::from_str(&auth.header_value())
            .map_err(|e| PushError::new(PushErrorKind::InvalidGroupingKey, "basic auth").caused_by(e))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PushError::new(PushErrorKind::Runtime, &url).caused_by(e))?;
    let exchange = async {
        let connect_error =
            |e: Box<dyn std::error::Error + Send + Sync>| PushError::new(PushErrorKind::Connect, &url).caused_by(e);
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| connect_error(e.into()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| connect_error(e.into()))?;
        let driver = tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(|e| connect_error(e.into()))?;
        let status = response.status();
        // The answer is a short message; read at most 64 KiB of it.
        let answer = Limited::new(response.into_body(), 64 * 1024).collect().await.map_err(connect_error)?.to_bytes();
        driver.abort();
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&answer[..answer.len().min(1024)]).into_owned();
        let mut error = PushError::new(PushErrorKind::Rejected, &url);
        error.status = Some(status.as_u16());
        error.message = Some(text).filter(|t| !t.trim().is_empty());
        Err(error)
    };
    runtime.block_on(async {
        tokio::time::timeout(config.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(PushError::new(PushErrorKind::Timeout, &url)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(config: PushConfig) -> String {
        config.url().unwrap()
    }

    #[test]
    fn grouping_key_follows_the_pushgateway_url_scheme() {
        let gw = "http://127.0.0.1:9091";
        assert_eq!(url(PushConfig::new(gw, "batch")), "http://127.0.0.1:9091/metrics/job/batch");
        assert_eq!(
            url(PushConfig::new("http://gw:9091/base/", "batch").label("instance", "a.b-c_d~e")),
            "http://gw:9091/base/metrics/job/batch/instance/a.b-c_d~e"
        );
        // A `/` (and anything not URL-unreserved) is base64url-encoded, as the docs define.
        assert_eq!(
            url(PushConfig::new(gw, "batch").label("path", "/var/tmp")),
            "http://127.0.0.1:9091/metrics/job/batch/path@base64/L3Zhci90bXA="
        );
        assert_eq!(url(PushConfig::new(gw, "a/b")), "http://127.0.0.1:9091/metrics/job@base64/YS9i");
        assert_eq!(
            url(PushConfig::new(gw, "batch").label("e", "")),
            "http://127.0.0.1:9091/metrics/job/batch/e@base64/="
        );
        assert_eq!(
            url(PushConfig::new(gw, "batch").label("s", "a b?")),
            "http://127.0.0.1:9091/metrics/job/batch/s@base64/YSBiPw=="
        );
        assert_eq!(url(PushConfig::new(gw, "..")), "http://127.0.0.1:9091/metrics/job@base64/Li4=");
    }

    #[test]
    fn unusable_gateways_and_keys_are_refused_before_sending() {
        let kind = |c: PushConfig| c.url().unwrap_err().kind();
        assert_eq!(kind(PushConfig::new("https://gw:9091", "j")), PushErrorKind::InvalidUrl);
        assert_eq!(kind(PushConfig::new("gw:9091", "j")), PushErrorKind::InvalidUrl);
        assert_eq!(kind(PushConfig::new("http://gw:9091/?x=1", "j")), PushErrorKind::InvalidUrl);
        assert_eq!(kind(PushConfig::new("http://u:p@gw:9091", "j")), PushErrorKind::InvalidUrl);
        assert_eq!(kind(PushConfig::new("http://gw:9091", "")), PushErrorKind::InvalidGroupingKey);
        assert_eq!(kind(PushConfig::new("http://gw", "j").label("job", "x")), PushErrorKind::InvalidGroupingKey);
        assert_eq!(kind(PushConfig::new("http://gw", "j").label("1x", "x")), PushErrorKind::InvalidGroupingKey);
        assert_eq!(kind(PushConfig::new("http://gw", "j").label("__x", "x")), PushErrorKind::InvalidGroupingKey);
        assert_eq!(
            kind(PushConfig::new("http://gw", "j").label("a", "1").label("a", "2")),
            PushErrorKind::InvalidGroupingKey
        );
    }

    #[test]
    fn an_unreachable_gateway_is_a_connect_error_naming_the_url() {
        // Bind and drop a listener to find a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let gateway = format!("http://127.0.0.1:{port}");
        let err = push(&Scrape::default(), &PushConfig::new(&gateway, "j")).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::Connect);
        assert!(err.to_string().contains(&format!("{gateway}/metrics/job/j")), "{err}");
    }
}
