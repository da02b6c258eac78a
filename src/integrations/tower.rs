//! HTTP request metrics for any tower service (feature `tower`), with route templates
//! from axum (feature `axum`).
//!
//! [`HttpMetricsLayer`] wraps a service that takes `http::Request`s and answers
//! `http::Response`s (axum, tonic, hyper through tower, ...) and records, in this
//! crate's files:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `http_requests_in_flight` | gauge (`livesum`) | none |
//!
//! * `route` is a **template**, never the raw URI (every distinct URI would be a new
//!   series): axum's `MatchedPath` (`/users/{id}`) when the layer is added with
//!   `Router::layer` or `route_layer` (feature `axum`), else a [`RouteLabel`] that
//!   the application put in the request's extensions, else `unmatched`. With axum,
//!   `Router::layer` wraps the routes (and a fallback) that exist when it is called:
//!   set an explicit `.fallback(..)` before `.layer(..)` to count 404s (as
//!   `route="unmatched"`), and merge the `/metrics` router after it so that scrapes
//!   are not counted.
//! * `method` is one of the nine standard methods, or `OTHER`.
//! * `status` is the response's three digits, or `error` when the inner service
//!   failed.
//! * The duration runs from the call until the response head is ready (the body may
//!   still stream after that). The in-flight gauge counts calls whose response head is
//!   not ready yet, and goes down also when the response future is dropped (the client
//!   went away).
//!
//! Per request: two labeled lookups (no lock, no allocation once the series exist)
//! and three atomic updates; a series that cannot be created (full disk, cardinality
//! limit) drops its writes and is counted (see
//! [`Registry::dropped_series`](crate::Registry::dropped_series)).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::integrations::tower::HttpMetricsLayer;
//! use prometheus_multiproc::Registry;
//! let registry = Registry::builder().dir(dir.path()).build()?;
//! let layer = HttpMetricsLayer::new(&registry)?;
//! // axum: Router::new().route("/users/{id}", get(user)).layer(layer)
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use crate::metrics::{Counter, DEFAULT_BUCKETS, Family, Gauge, GaugeMode, Histogram, InProgress, Opts};
use crate::{Registry, Result};

/// Name of the request counter.
pub const REQUESTS_METRIC: &str = "http_requests_total";
/// Name of the request-duration histogram.
pub const DURATION_METRIC: &str = "http_request_duration_seconds";
/// Name of the in-flight gauge.
pub const IN_FLIGHT_METRIC: &str = "http_requests_in_flight";

/// A route template for the `route` label, for services without axum's routing: put
/// one in the request's extensions before the layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLabel(pub Cow<'static, str>);

#[derive(Debug)]
struct Metrics {
    requests: Family<Counter>,
    duration: Family<Histogram>,
    in_flight: Gauge,
}

/// A `tower::Layer` recording HTTP request metrics (see the module docs). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    metrics: Arc<Metrics>,
}

impl HttpMetricsLayer {
    /// Declares the three metrics on `registry`, with prometheus_client's default
    /// buckets.
    ///
    /// # Errors
    /// As the registry's declarations: a conflict with an earlier declaration of the
    /// same names, or an I/O kind naming the file.
    pub fn new(registry: &Registry) -> Result<HttpMetricsLayer> {
        HttpMetricsLayer::with_buckets(registry, &DEFAULT_BUCKETS)
    }

    /// As [`HttpMetricsLayer::new`], with the duration histogram's bucket bounds.
    ///
    /// # Errors
    /// As [`HttpMetricsLayer::new`], and [`ErrorKind::InvalidBuckets`](crate::ErrorKind::InvalidBuckets).
    pub fn with_buckets(registry: &Registry, buckets: &[f64]) -> Result<HttpMetricsLayer> {
        let labels = ["method", "route", "status"];
        let metrics = Metrics {
            requests: registry.counter_family(Opts::new(REQUESTS_METRIC, "HTTP requests answered."), &labels)?,
            duration: registry.histogram_family(
                Opts::new(DURATION_METRIC, "Time until the response head was ready, in seconds."),
                buckets,
                &labels,
            )?,
            in_flight: registry
                .gauge(Opts::new(IN_FLIGHT_METRIC, "HTTP requests being handled."), GaugeMode::LiveSum)?,
        };
        Ok(HttpMetricsLayer { metrics: Arc::new(metrics) })
    }
}

impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics { inner, metrics: Arc::clone(&self.metrics) }
    }
}

/// The service [`HttpMetricsLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The route of a request, taken before the request moves into the inner service.
#[derive(Debug)]
enum Route {
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
    Label(Cow<'static, str>),
    Unmatched,
}

impl Route {
    fn of<B>(req: &http::Request<B>) -> Route {
        #[cfg(feature = "axum")]
        if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
            return Route::Matched(path.clone());
        }
        match req.extensions().get::<RouteLabel>() {
            Some(label) => Route::Label(label.0.clone()),
            None => Route::Unmatched,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            Route::Matched(path) => path.as_str(),
            Route::Label(label) => label,
            Route::Unmatched => "unmatched",
        }
    }
}

/// The `method` label: the standard methods by name, anything else as `OTHER` (a
/// client may send any token as a method).
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for HttpMetrics<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> ResponseFuture<S::Future> {
        let pending = Pending {
            method: method_label(req.method()),
            route: Route::of(&req),
            start: Instant::now(),
            _in_flight: self.metrics.in_flight.track_inprogress(),
            metrics: Arc::clone(&self.metrics),
        };
        ResponseFuture { inner: self.inner.call(req), pending: Some(pending) }
    }
}

/// What a request records once its response head is ready.
#[derive(Debug)]
struct Pending {
    metrics: Arc<Metrics>,
    method: &'static str,
    route: Route,
    start: Instant,
    /// Keeps the in-flight gauge up until the response or the future's drop.
    _in_flight: InProgress,
}

impl Pending {
    fn record(self, status: &str) {
        let labels = [self.method, self.route.as_str(), status];
        let seconds = self.start.elapsed().as_secs_f64();
        // A series that cannot be created is counted by the registry and dropped.
        let _ = self.metrics.requests.with(&labels, Counter::inc);
        let _ = self.metrics.duration.with(&labels, |h| h.observe(seconds));
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HttpMetrics`]: the inner service's, recording on completion.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = std::result::Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(pending) = this.pending.take() {
            match &out {
                Ok(response) => pending.record(response.status().as_str()),
                Err(_) => pending.record("error"),
            }
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_share_one_label() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::from_bytes(b"PURGE").unwrap()), "OTHER");
    }
}
