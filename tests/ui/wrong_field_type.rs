// A field whose type cannot name itself as a label value: f64 (a float label value
// would make a new series for every rounding) is not a LabelValue.
use prometheus_multiproc::LabelSet;

#[derive(LabelSet)]
struct Labels {
    route: String,
    latency: f64,
}

fn main() {}
