//! Typed label sets: `#[derive(LabelSet)]` structs and tuples through a
//! `TypedFamily`, read back from a real scrape of the files.

use prometheus_multiproc::{
    Collector, Counter, ErrorKind, GaugeMode, LabelSet, LabelValue, NamedLabelSet, Opts, Registry, Scrape,
};
use proptest::prelude::*;

#[derive(LabelValue, Debug, Clone, Copy)]
#[label(rename_all = "UPPERCASE")]
enum Method {
    Get,
    Post,
    #[label(rename = "M-SEARCH")]
    MSearch,
}

#[derive(LabelSet, Debug, Clone)]
struct RequestLabels {
    method: Method,
    route: String,
    status: u16,
    cached: bool,
    #[label(rename = "shard")]
    r#type: i64,
}

fn scrape(dir: &std::path::Path) -> Scrape {
    Collector::new(dir).unwrap().collect().unwrap()
}

fn registry(dir: &std::path::Path) -> Registry {
    Registry::builder().dir(dir).build().unwrap()
}

/// Values nothing should trip on: JSON and exposition escapes, line breaks, control
/// characters, and text outside ASCII.
const HOSTILE: &[&str] = &[
    "",
    "\"quoted\"",
    "back\\slash",
    "\\\"",
    "new\nline",
    "cr\rtab\t",
    "nul\u{0}del\u{7f}",
    "line\u{2028}separator",
    "日本語 🦀 é",
    "{\"json\": [1, 2]}",
    "trailing\\",
];

#[test]
fn derived_label_names_are_the_field_names_in_order() {
    assert_eq!(RequestLabels::NAMES, ["method", "route", "status", "cached", "shard"]);
}

#[test]
fn hostile_string_values_round_trip_exactly_through_a_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let requests = registry.typed_counter_family::<RequestLabels>(Opts::new("requests_total", "Requests.")).unwrap();
    for (i, route) in HOSTILE.iter().enumerate() {
        let labels = RequestLabels {
            method: Method::Post,
            route: (*route).to_owned(),
            status: 200,
            cached: i % 2 == 0,
            r#type: -1,
        };
        requests.labels(&labels).inc_by(i as u64 + 1);
    }
    let scrape = scrape(dir.path());
    for (i, route) in HOSTILE.iter().enumerate() {
        let cached = if i % 2 == 0 { "true" } else { "false" };
        let labels = [("method", "POST"), ("route", route), ("status", "200"), ("cached", cached), ("shard", "-1")];
        assert_eq!(scrape.value("requests_total", &labels), Some(i as f64 + 1.0), "route {route:?}");
    }
    assert_eq!(scrape.family("requests").unwrap().samples.len(), HOSTILE.len());
    assert!(registry.dropped_series().iter().all(|(_, n)| *n == 0));
}

#[test]
fn enum_values_integers_and_bools_are_written_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let requests = registry.typed_counter_family::<RequestLabels>(Opts::new("requests_total", "Requests.")).unwrap();
    let labels =
        RequestLabels { method: Method::MSearch, route: "/".into(), status: 404, cached: false, r#type: i64::MIN };
    requests.labels(&labels).inc();
    requests.labels(&RequestLabels { method: Method::Get, ..labels.clone() }).inc();
    let scrape = scrape(dir.path());
    let min = i64::MIN.to_string();
    for method in ["M-SEARCH", "GET"] {
        let labels = [("method", method), ("route", "/"), ("status", "404"), ("cached", "false"), ("shard", &min)];
        assert_eq!(scrape.value("requests_total", &labels), Some(1.0), "{method}");
    }
}

#[test]
fn typed_and_untyped_declarations_of_one_metric_share_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let typed = registry.typed_counter_family::<RequestLabels>(Opts::new("requests_total", "Requests.")).unwrap();
    let untyped = registry.counter_family(Opts::new("requests_total", "Requests."), RequestLabels::NAMES).unwrap();
    let labels = RequestLabels { method: Method::Get, route: "/a".into(), status: 200, cached: true, r#type: 3 };
    typed.labels(&labels).inc();
    untyped.labels(&["GET", "/a", "200", "true", "3"]).inc();
    untyped.labels(&("GET", "/a", 200u16, true, 3u8)).inc();
    assert_eq!(typed.get(&labels).unwrap().get(), 3.0);
    assert_eq!(typed.with(&labels, Counter::get).unwrap(), 3.0);

    #[derive(LabelSet)]
    struct Other {
        method: &'static str,
    }
    let err = registry.typed_counter_family::<Other>(Opts::new("requests_total", "Requests.")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "other label names are another declaration");
}

#[test]
fn names_a_metric_type_reserves_are_refused_at_declaration() {
    #[derive(LabelSet)]
    struct Bucketed {
        le: u32,
    }
    #[derive(LabelSet)]
    struct Quantiled {
        quantile: u32,
    }
    #[derive(LabelSet)]
    struct Pid {
        pid: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let opts = || Opts::new("m", "M.");
    assert_eq!(
        registry.typed_histogram_family::<Bucketed>(opts(), &[1.0]).unwrap_err().kind(),
        ErrorKind::InvalidLabelName
    );
    assert_eq!(registry.typed_summary_family::<Quantiled>(opts()).unwrap_err().kind(), ErrorKind::InvalidLabelName);
    assert_eq!(
        registry.typed_gauge_family::<Pid>(opts(), GaugeMode::All).unwrap_err().kind(),
        ErrorKind::InvalidLabelName
    );
    registry.typed_counter_family::<Bucketed>(opts()).unwrap(); // a counter reserves none of them
}

#[test]
fn every_metric_type_has_a_typed_family() {
    #[derive(LabelSet)]
    struct Route<'a> {
        route: &'a str,
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let hist = registry.typed_histogram_family::<Route>(Opts::new("lat_seconds", "L."), &[0.1, 1.0]).unwrap();
    let summary = registry.typed_summary_family::<Route>(Opts::new("size_bytes", "S.")).unwrap();
    let gauge = registry.typed_gauge_family::<Route>(Opts::new("in_flight", "G."), GaugeMode::LiveSum).unwrap();
    let route = String::from("/x");
    hist.labels(&Route { route: &route }).observe(0.5);
    summary.labels(&Route { route: &route }).observe(10.0);
    gauge.labels(&Route { route: &route }).set(4.0);
    let scrape = scrape(dir.path());
    assert_eq!(scrape.value("lat_seconds_bucket", &[("route", "/x"), ("le", "1.0")]), Some(1.0));
    assert_eq!(scrape.value("size_bytes_sum", &[("route", "/x")]), Some(10.0));
    assert_eq!(scrape.value("in_flight", &[("route", "/x")]), Some(4.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any string, in any field of a tuple label set, is the label value a scrape reads.
    #[test]
    fn any_string_round_trips_through_a_scrape(a in any::<String>(), b in "\\PC*", n in any::<i32>()) {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(dir.path());
        let family = registry.counter_family(Opts::new("t_total", "T."), &["a", "b", "n"]).unwrap();
        family.labels(&(a.as_str(), &b, n)).inc();
        let n = n.to_string();
        let scrape = scrape(dir.path());
        prop_assert_eq!(scrape.value("t_total", &[("a", &a), ("b", &b), ("n", &n)]), Some(1.0));
    }
}

/// Arrays, slices and `Vec`s, of any length and string type, are looked up in place and
/// find the one series their values name; the handle `labels` lends is the family's.
#[test]
fn string_lists_of_any_length_and_type_name_one_series() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let names: Vec<String> = (0..12).map(|i| format!("l{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let family = registry.counter_family(Opts::new("wide_total", "W."), &names).unwrap();
    let owned: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
    family.labels(&owned).inc();
    family.labels(borrowed.as_slice()).inc();
    let array: [&str; 12] = borrowed.clone().try_into().unwrap();
    family.labels(&array).inc();
    let kept: Counter = family.labels(&array).clone();
    kept.inc();
    assert_eq!(family.get(&borrowed).unwrap().get(), 4.0);
    let labels: Vec<(&str, &str)> = names.iter().copied().zip(borrowed.iter().copied()).collect();
    assert_eq!(scrape(dir.path()).value("wide_total", &labels), Some(4.0));
}
