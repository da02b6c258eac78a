//! `prometheus-multiproc`: scrape, inspect, serve, push, clear and compact a multiprocess metrics
//! directory from the command line. The logic is [`prometheus_multiproc::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(prometheus_multiproc::cli::main_then_exit(std::env::args_os()))
}
