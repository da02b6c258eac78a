// What the derives refuse, each with its own message.
use prometheus_multiproc::{LabelSet, LabelValue};

#[derive(LabelSet)]
struct Reserved {
    #[label(rename = "__name__")]
    name: String,
}

#[derive(LabelSet)]
struct Twice {
    a: String,
    #[label(rename = "a")]
    b: String,
}

#[derive(LabelSet)]
struct Unnamed(String);

#[derive(LabelValue)]
enum WithFields {
    A(u8),
}

#[derive(LabelValue)]
#[label(rename_all = "kebab-case")]
enum UnknownRule {
    A,
}

fn main() {}
