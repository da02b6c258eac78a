// A typed family takes its own label set and nothing else: not a tuple of the right
// values, not another struct.
use prometheus_multiproc::{LabelSet, Opts, Registry};

#[derive(LabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
}

#[derive(LabelSet)]
struct OtherLabels {
    method: &'static str,
    status: u16,
}

fn main() {
    let registry = Registry::from_env().unwrap();
    let requests = registry.typed_counter_family::<RequestLabels>(Opts::new("requests_total", "Requests.")).unwrap();
    requests.labels(&RequestLabels { method: "GET", status: "200" }).inc();
    requests.labels(&("GET", 200u16)).inc();
    requests.labels(&OtherLabels { method: "GET", status: 200 }).inc();
}
