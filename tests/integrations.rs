//! The scrape-side integrations: files written by two workers, merged through the
//! tikv `prometheus` collector (feature `prometheus`) and the `prometheus-client`
//! collector (feature `prometheus-client`), with exact encoded output. The `metrics`
//! recorder has its own binary (tests/integration_metrics.rs): it installs a global
//! recorder in worker processes.
//!
//! Run with `cargo test --all-features`; without a feature, its tests are reported as
//! ignored rather than silently absent.
#![allow(dead_code)]

mod support;

use std::path::Path;

use prometheus_multiproc::format::{self, key::encode_key};
use prometheus_multiproc::{GaugeMode, Opts, Registry, WorkerId};

#[cfg(not(feature = "prometheus"))]
#[test]
#[ignore = "needs the `prometheus` feature: run `cargo test --all-features`"]
fn prometheus_integration_needs_its_feature() {}

#[cfg(not(feature = "prometheus-client"))]
#[test]
#[ignore = "needs the `prometheus-client` feature: run `cargo test --all-features`"]
fn prometheus_client_integration_needs_its_feature() {}

fn worker(dir: &Path, id: &str) -> Registry {
    Registry::builder().dir(dir).worker_id(WorkerId::new(id).unwrap()).build().unwrap()
}

/// Two workers, `w1` and `w2`, writing one metric of every type:
///
/// * `requests_total{route}`: `/a` 3 + 2, `/b` 1;
/// * `in_flight` (livesum): 2 + 3;
/// * `temperature_celsius` (all): 20.5 and 21 under `pid` `w1` and `w2`;
/// * `latency_seconds{route}` (buckets 0.3, 1): `/a` observes 0.25, 0.5 in w1 and 2 in w2;
/// * `payload_bytes` (summary): 100 and 300.
///
/// The returned registries keep both workers alive: the live-sum gauge of a writer
/// that has exited leaves the scrape.
fn two_workers(dir: &Path) -> [Registry; 2] {
    let declare = |r: &Registry| {
        (
            r.counter_family(Opts::new("requests_total", "Requests."), &["route"]).unwrap(),
            r.gauge(Opts::new("in_flight", "In flight."), GaugeMode::LiveSum).unwrap(),
            r.gauge(Opts::new("temperature", "Temperature.").unit("celsius"), GaugeMode::All).unwrap(),
            r.histogram_family(Opts::new("latency_seconds", "Latency."), &[0.3, 1.0], &["route"]).unwrap(),
            r.summary(Opts::new("payload_bytes", "Payload.")).unwrap(),
        )
    };
    let w1 = worker(dir, "w1");
    let (requests, in_flight, temperature, latency, payload) = declare(&w1);
    requests.get(&["/a"]).unwrap().inc_by(3.0);
    in_flight.inc_by(2.0);
    temperature.set(20.5);
    latency.get(&["/a"]).unwrap().observe(0.25);
    latency.get(&["/a"]).unwrap().observe(0.5);
    payload.observe(100.0);

    let w2 = worker(dir, "w2");
    let (requests, in_flight, temperature, latency, payload) = declare(&w2);
    requests.get(&["/a"]).unwrap().inc_by(2.0);
    requests.get(&["/b"]).unwrap().inc();
    in_flight.inc_by(3.0);
    temperature.set(21.0);
    latency.get(&["/a"]).unwrap().observe(2.0);
    payload.observe(300.0);
    [w1, w2]
}

/// Writes `counter_stray.db`: a counter family `jobs` holding its `jobs_total` and a
/// sample no counter produces, `jobs_created` (as a foreign writer could).
fn stray_sample_file(dir: &Path) {
    let mut out = format::encode_header(0).to_vec();
    for (sample, value) in [("jobs_total", 4.0), ("jobs_created", 1700000000.0)] {
        format::encode_entry(&mut out, encode_key("jobs", sample, &[], "Jobs.").as_bytes(), value, 0.0);
    }
    let used = out.len() as u32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    std::fs::write(dir.join("counter_stray.db"), out).unwrap();
}

#[cfg(feature = "prometheus")]
mod prometheus_tikv {
    use prometheus::core::Collector as _;
    use prometheus::{Encoder, TextEncoder};
    use prometheus_multiproc::Collector;
    use prometheus_multiproc::integrations::prometheus::{PrometheusCollector, to_proto};

    use super::*;
    use crate::support::TestDir;

    fn encode(registry: &prometheus::Registry) -> String {
        TextEncoder::new().encode_to_string(&registry.gather()).unwrap()
    }

    #[test]
    fn registry_gathers_merged_values_of_every_type() {
        let dir = TestDir::new();
        let _workers = two_workers(dir.path());
        let registry = prometheus::Registry::new();
        registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap())).unwrap();
        assert_eq!(
            encode(&registry),
            "# HELP in_flight In flight.\n\
             # TYPE in_flight gauge\n\
             in_flight 5\n\
             # HELP latency_seconds Latency.\n\
             # TYPE latency_seconds histogram\n\
             latency_seconds_bucket{route=\"/a\",le=\"0.3\"} 1\n\
             latency_seconds_bucket{route=\"/a\",le=\"1\"} 2\n\
             latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n\
             latency_seconds_sum{route=\"/a\"} 2.75\n\
             latency_seconds_count{route=\"/a\"} 3\n\
             # HELP payload_bytes Payload.\n\
             # TYPE payload_bytes summary\n\
             payload_bytes_sum 400\n\
             payload_bytes_count 2\n\
             # HELP requests_total Requests.\n\
             # TYPE requests_total counter\n\
             requests_total{route=\"/a\"} 5\n\
             requests_total{route=\"/b\"} 1\n\
             # HELP temperature_celsius Temperature.\n\
             # TYPE temperature_celsius gauge\n\
             temperature_celsius{pid=\"w1\"} 20.5\n\
             temperature_celsius{pid=\"w2\"} 21\n"
        );
    }

    #[test]
    fn native_metrics_and_the_multiprocess_collector_share_a_registry() {
        let dir = TestDir::new();
        worker(dir.path(), "w1").counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc_by(7.0);
        let registry = prometheus::Registry::new();
        let native = prometheus::IntGauge::new("master_up", "Master is up.").unwrap();
        native.set(1);
        registry.register(Box::new(native)).unwrap();
        registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap())).unwrap();
        assert_eq!(
            encode(&registry),
            "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 7\n\
             # HELP master_up Master is up.\n# TYPE master_up gauge\nmaster_up 1\n"
        );
    }

    #[test]
    fn each_collect_sees_new_writes() {
        let dir = TestDir::new();
        let jobs = worker(dir.path(), "w1").counter(Opts::new("jobs_total", "Jobs.")).unwrap();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap())).unwrap();
        jobs.inc();
        assert!(encode(&registry).ends_with("\njobs_total 1\n"));
        jobs.inc_by(2.0);
        assert!(encode(&registry).ends_with("\njobs_total 3\n"));
    }

    #[test]
    fn second_unchecked_collector_is_refused_by_the_registry() {
        let dir = TestDir::new();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap())).unwrap();
        let again = registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap()));
        assert!(matches!(again, Err(prometheus::Error::AlreadyReg)), "{again:?}");
    }

    #[test]
    fn corrupt_file_is_skipped_and_the_rest_is_exposed() {
        let dir = TestDir::new();
        worker(dir.path(), "w1").counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc_by(2.0);
        std::fs::write(dir.path().join("counter_bad.db"), b"\xff\xff\xff\x7fgarbage").unwrap();
        std::fs::write(dir.path().join("gauge_livesum_empty.db"), b"").unwrap();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(PrometheusCollector::new(dir.path()).unwrap())).unwrap();
        assert_eq!(encode(&registry), "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 2\n");
    }

    #[test]
    fn vanished_directory_gives_no_families_instead_of_panicking() {
        let dir = TestDir::new();
        let sub = dir.path().join("metrics");
        std::fs::create_dir(&sub).unwrap();
        let collector = PrometheusCollector::new(&sub).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        assert!(collector.collect().is_empty());
    }

    #[test]
    fn stray_sample_becomes_a_gauge_because_the_text_encoder_panics_on_untyped() {
        let dir = TestDir::new();
        stray_sample_file(dir.path());
        let families = to_proto(&Collector::new(dir.path()).unwrap().collect().unwrap().families);
        let kinds: Vec<(&str, prometheus::proto::MetricType)> =
            families.iter().map(|f| (f.name(), f.get_field_type())).collect();
        assert_eq!(
            kinds,
            [
                ("jobs_total", prometheus::proto::MetricType::COUNTER),
                ("jobs_created", prometheus::proto::MetricType::GAUGE)
            ]
        );
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 4\n\
             # HELP jobs_created Jobs.\n# TYPE jobs_created gauge\njobs_created 1700000000\n"
        );
    }
}

#[cfg(feature = "prometheus-client")]
mod prometheus_client_registry {
    use prometheus_client::encoding::text::encode;
    use prometheus_multiproc::integrations::prometheus_client::PrometheusClientCollector;

    use super::*;
    use crate::support::TestDir;

    fn registry(dir: &Path) -> prometheus_client::registry::Registry {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(PrometheusClientCollector::new(dir).unwrap()));
        registry
    }

    fn encoded(registry: &prometheus_client::registry::Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }

    /// The exposition of [`two_workers`] through `prometheus-client`'s OpenMetrics text
    /// encoder, in the collector's (Python's) family order: first mention in sorted
    /// file order, so `gauge_all_*` before `gauge_livesum_*`.
    const TWO_WORKERS: &str = "\
# HELP requests Requests.
# TYPE requests counter
requests_total{route=\"/a\"} 5.0
requests_total{route=\"/b\"} 1.0
# HELP temperature_celsius Temperature.
# TYPE temperature_celsius gauge
temperature_celsius{pid=\"w1\"} 20.5
temperature_celsius{pid=\"w2\"} 21.0
# HELP in_flight In flight.
# TYPE in_flight gauge
in_flight 5.0
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_sum{route=\"/a\"} 2.75
latency_seconds_count{route=\"/a\"} 3
latency_seconds_bucket{le=\"0.3\",route=\"/a\"} 1
latency_seconds_bucket{le=\"1.0\",route=\"/a\"} 2
latency_seconds_bucket{le=\"+Inf\",route=\"/a\"} 3
# HELP payload_bytes_count Payload.
# TYPE payload_bytes_count unknown
payload_bytes_count 2.0
# HELP payload_bytes_sum Payload.
# TYPE payload_bytes_sum unknown
payload_bytes_sum 400.0
# EOF
";

    #[test]
    fn encode_emits_merged_values_of_every_type() {
        let dir = TestDir::new();
        let _workers = two_workers(dir.path());
        assert_eq!(encoded(&registry(dir.path())), TWO_WORKERS);
    }

    #[test]
    fn pythons_openmetrics_parser_reads_the_same_values() {
        let dir = TestDir::new();
        let _workers = two_workers(dir.path());
        let parsed = support::run_python(PY_PARSE_OPENMETRICS, &[&encoded(&registry(dir.path()))]);
        assert_eq!(
            parsed.lines().collect::<Vec<_>>(),
            [
                "requests counter requests_total{route=/a} 5.0",
                "requests counter requests_total{route=/b} 1.0",
                "temperature_celsius gauge temperature_celsius{pid=w1} 20.5",
                "temperature_celsius gauge temperature_celsius{pid=w2} 21.0",
                "in_flight gauge in_flight{} 5.0",
                "latency_seconds histogram latency_seconds_sum{route=/a} 2.75",
                "latency_seconds histogram latency_seconds_count{route=/a} 3",
                "latency_seconds histogram latency_seconds_bucket{le=0.3,route=/a} 1",
                "latency_seconds histogram latency_seconds_bucket{le=1.0,route=/a} 2",
                "latency_seconds histogram latency_seconds_bucket{le=+Inf,route=/a} 3",
                "payload_bytes_count unknown payload_bytes_count{} 2.0",
                "payload_bytes_sum unknown payload_bytes_sum{} 400.0",
            ]
        );
    }

    /// Parses `sys.argv[1]` with prometheus_client's (strict) OpenMetrics parser and
    /// prints `family type sample{labels} value` per sample.
    const PY_PARSE_OPENMETRICS: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.argv[1]):
    for s in fam.samples:
        labels = ','.join('%s=%s' % (k, s.labels[k]) for k in sorted(s.labels))
        print('%s %s %s{%s} %r' % (fam.name, fam.type, s.name, labels, s.value))
"#;

    #[test]
    fn help_is_escaped_for_the_text_format() {
        let dir = TestDir::new();
        worker(dir.path(), "w1")
            .gauge(Opts::new("g", "Two\nlines,\nback\\slash \"quoted\"."), GaugeMode::Max)
            .unwrap()
            .set(1.0);
        assert_eq!(
            encoded(&registry(dir.path())),
            "# HELP g Two\\nlines,\\nback\\\\slash \"quoted\".\n# TYPE g gauge\ng 1.0\n# EOF\n"
        );
    }

    #[test]
    fn native_metrics_and_the_multiprocess_collector_share_a_registry() {
        let dir = TestDir::new();
        worker(dir.path(), "w1").counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc_by(7.0);
        let mut registry = registry(dir.path());
        let up = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        up.set(1);
        registry.register("master_up", "Master is up", up);
        assert_eq!(
            encoded(&registry),
            "# HELP master_up Master is up.\n# TYPE master_up gauge\nmaster_up 1\n\
             # HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 7.0\n# EOF\n"
        );
    }

    #[test]
    fn stray_sample_becomes_an_unknown_family() {
        let dir = TestDir::new();
        stray_sample_file(dir.path());
        assert_eq!(
            encoded(&registry(dir.path())),
            "# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 4.0\n\
             # HELP jobs_created Jobs.\n# TYPE jobs_created unknown\njobs_created 1700000000.0\n# EOF\n"
        );
    }

    #[test]
    fn corrupt_file_is_skipped_and_vanished_directory_encodes_nothing() {
        let dir = TestDir::new();
        worker(dir.path(), "w1").counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc_by(2.0);
        std::fs::write(dir.path().join("counter_bad.db"), b"\xff\xff\xff\x7fgarbage").unwrap();
        assert_eq!(encoded(&registry(dir.path())), "# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 2.0\n# EOF\n");

        let sub = dir.path().join("metrics");
        std::fs::create_dir(&sub).unwrap();
        let registry = registry(&sub);
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(encoded(&registry), "# EOF\n");
    }
}
