//! An axum handler for `/metrics` (feature `axum`): the merged directory, with the same
//! content negotiation and gzip as [`render`](crate::render()).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use std::sync::Arc;
//! use prometheus_multiproc::Collector;
//! use prometheus_multiproc::integrations::axum::metrics_router;
//! let collector = Arc::new(Collector::new(dir.path())?);
//! let app: axum::Router = axum::Router::new() /* .route(...) .layer(HttpMetricsLayer) */
//!     .merge(metrics_router(collector)); // after .layer: /metrics itself is not counted
//! # let _ = app;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::{Collector, render};

/// A router answering `GET /metrics` (and `HEAD`) with [`metrics_handler`].
pub fn metrics_router(collector: Arc<Collector>) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics_handler)).with_state(collector)
}

/// Scrapes the collector's directory (on the blocking pool: it reads files) and
/// answers in the format and encoding the request's `Accept` and `Accept-Encoding`
/// ask for. A scrape never fails on a bad file; only a directory that cannot be listed
/// gives a `500` naming it.
pub async fn metrics_handler(State(collector): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let header_str = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (accept, encoding) = (header_str(header::ACCEPT), header_str(header::ACCEPT_ENCODING));
    let rendered = tokio::task::spawn_blocking(move || {
        collector.collect().map(|scrape| render(&scrape, accept.as_deref(), encoding.as_deref()))
    })
    .await;
    let mut response = match rendered {
        Ok(Ok(page)) => {
            let mut response = Response::new(Body::from(page.body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(page.content_type));
            if let Some(encoding) = page.content_encoding {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            }
            response
        }
        Ok(Err(err)) => Response::new(Body::from(format!("metrics unavailable: {err}\n"))),
        Err(join) => Response::new(Body::from(format!("metrics unavailable: {join}\n"))),
    };
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    response
}
