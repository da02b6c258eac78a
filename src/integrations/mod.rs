//! Adapters to the Rust metrics ecosystems and to tower/axum, each behind a cargo feature (none is
//! on by default).
//!
//! | Feature | Module | What it is |
//! |---|---|---|
//! | `prometheus` | `integrations::prometheus` | A tikv `prometheus` 0.14 `Collector`: register it in a `prometheus::Registry` and the merged multiprocess families come out of `gather()`. |
//! | `prometheus-client` | `integrations::prometheus_client` | A `prometheus-client` 0.26 `Collector`: register it with `Registry::register_collector` and `encode` emits the merged families. |
//! | `metrics` | `integrations::metrics` | A `metrics` 0.24 `Recorder` that writes into this crate's files, so `metrics::counter!` and friends work in multiprocess mode. |
//! | `tower` | `integrations::tower` | A `tower::Layer` recording `http_requests_total`, `http_request_duration_seconds` and an in-flight gauge for any tower HTTP service. |
//! | `axum` | `integrations::axum` | Route templates from axum's `MatchedPath` for the layer, and a `/metrics` handler with negotiation and gzip. |
//!
//! The two collectors sit on the scrape side (directory → merge → their data model);
//! the recorder sits on the write side (their macros → this crate's handles → files).
//! Neither kind reaches into the other: data still flows one way.
//!
//! The collectors re-read the directory on every scrape through one
//! [`Collector`](crate::Collector), which keeps its state between scrapes; a file that
//! cannot be read is skipped and logged by that collector, never a panic or a failed
//! scrape.

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "prometheus-client")]
pub mod prometheus_client;
#[cfg(any(feature = "prometheus", feature = "prometheus-client"))]
mod shape;
#[cfg(feature = "tower")]
pub mod tower;
