//! The `prometheus-multiproc` command line (feature `cli`): scrape, inspect, serve,
//! push, clear and compact a multiprocess metrics directory.
//!
//! [`main`] takes the arguments and returns the exit status, so that the binary and
//! other front ends (the Python package's `python -m prometheus_multiproc`) run the
//! same code.
//!
//! Exit status: 0 on success (files skipped by a scrape are warnings on stderr), 2 on
//! a usage error, 1 when the directory itself cannot be read or the operation fails.

mod inspect;

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cleanup;
use crate::expose::{self, Escaping, Format};
use crate::push::{self, PushConfig, PushMethod};
use crate::serve::{self, BasicAuth, DEFAULT_LISTEN, ServeConfig};
use crate::{Collector, DIR_ENV, ErrorKind, Scrape, WorkerId, dir_from_env};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Scrape, inspect, serve, push and tidy a prometheus_client multiprocess directory
/// (written by this crate or by Python's prometheus_client).
#[derive(Debug, Parser)]
#[command(name = "prometheus-multiproc", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the merged exposition of every worker's files to stdout.
    Scrape {
        #[command(flatten)]
        dir: DirArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// List each `*.db` file: type, gauge mode, writer ID, liveness, entries, bytes used
    /// and allocated, and problems found.
    Inspect {
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the merged metrics over HTTP(S) at /metrics until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DirArg,
        /// Address to listen on (IP:PORT). The default is loopback only.
        #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_LISTEN)]
        listen: SocketAddr,
        #[command(flatten)]
        auth: AuthArgs,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Most connections served at once.
        #[arg(long, value_name = "N", default_value_t = 64)]
        max_connections: usize,
        /// Compact the directory automatically, checking every SECONDS (off by default).
        #[arg(long, value_name = "SECONDS")]
        compact_interval: Option<f64>,
        /// With --compact-interval: compact once at least N files of dead writers can be
        /// folded or removed.
        #[arg(long, value_name = "N", default_value_t = 64, requires = "compact_interval")]
        compact_min_dead_files: usize,
        /// Also serve CPU, memory and descriptor metrics of every live writer of ours,
        /// read from /proc at each scrape (label `worker`; needs the workers' pid
        /// namespace, and their user for process_open_fds).
        #[arg(long)]
        process_metrics: bool,
    },
    /// Remove the live-mode gauge files of a dead worker (Python's mark_process_dead).
    MarkDead {
        /// The worker ID (a pid, or a stable ID such as w3).
        id: String,
        #[command(flatten)]
        dir: DirArg,
        /// Proceed even though the worker is alive.
        #[arg(long)]
        force: bool,
    },
    /// Remove a previous run's files (ours and Python's, nothing else) before any
    /// worker starts; refused while a writer is alive or a compaction runs.
    Clear {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Push the merged metrics to a Prometheus Pushgateway.
    Push {
        #[command(flatten)]
        dir: DirArg,
        /// The gateway, e.g. http://127.0.0.1:9091.
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// The job name of the group.
        #[arg(long, value_name = "NAME")]
        job: String,
        /// A grouping label, K=V (repeatable).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// put replaces the whole group; post replaces only same-named metrics.
        #[arg(long, value_enum, default_value_t = MethodArg::Put)]
        method: MethodArg,
        /// Time limit in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Fold dead workers' files into archives, keeping every total (shrinks a directory
    /// that accumulates files from restarted workers).
    Compact {
        #[command(flatten)]
        dir: DirArg,
        /// Do nothing unless at least N files of dead writers can be folded or removed.
        #[arg(long, value_name = "N", default_value_t = 1)]
        min_dead_files: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct DirArg {
    /// The metrics directory [default: $PROMETHEUS_MULTIPROC_DIR].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct AuthArgs {
    /// HTTP basic authentication user (needs --basic-auth-password-file).
    #[arg(long, value_name = "USER", requires = "basic_auth_password_file")]
    basic_auth_user: Option<String>,
    /// File holding the basic authentication password (its first line).
    #[arg(long, value_name = "FILE", requires = "basic_auth_user")]
    basic_auth_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    Openmetrics,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    /// HTTP PUT.
    Put,
    /// HTTP POST.
    Post,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, found {text:?}")),
    }
}

/// How a command failed: a usage error (exit 2) or a failure (exit 1).
enum Failure {
    Usage(String),
    Failed(String),
}

/// `error` and its chain of sources, `: `-separated (a source whose message the text
/// already holds is left out): how the command line, and the Python package's
/// exceptions, word an error.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn failed(error: impl std::error::Error) -> Failure {
    Failure::Failed(chain(&error))
}

/// Runs the command line `args` (the first item is the program name, as in
/// `std::env::args_os()`) and returns the exit status: 0 on success, 1 on failure, 2 on
/// a usage error. `--help` and `--version` print to stdout and return 0; messages go
/// to stderr.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    main_with(args, Exit::Later)
}

/// As [`main`], in a process that exits as soon as this returns (the
/// `prometheus-multiproc` binary): what `scrape` and `push` built (the collector's
/// tables and file states, the scrape, the text) is left for the exit to free at once
/// instead of being freed piece by piece here (1-5 ms for a large directory). Where the
/// process goes on, call [`main`]: this would leak all of it, mappings included.
pub fn main_then_exit<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    main_with(args, Exit::Next)
}

/// Whether the process exits right after the command (see [`main_then_exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Later,
    Next,
}

impl Exit {
    /// Leaves `value` for the process exit to free when it comes next; else drops it.
    fn release<T>(self, value: T) {
        match self {
            Exit::Next => std::mem::forget(value),
            Exit::Later => drop(value),
        }
    }
}

fn main_with<I, T>(args: I, exit: Exit) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match run(cli.command, exit) {
        Ok(()) => 0,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}\n\nFor more information, try '--help'.");
            2
        }
        Err(Failure::Failed(message)) => {
            eprintln!("error: {message}");
            1
        }
    }
}

fn run(command: Command, exit: Exit) -> Result<(), Failure> {
    match command {
        Command::Scrape { dir, format } => {
            let scrape = scrape(&dir.resolve()?, exit)?;
            let mut text = String::with_capacity(expose::body_capacity(&scrape.families));
            let format = match format {
                OutputFormat::Text => Format::Text,
                OutputFormat::Openmetrics => Format::OpenMetrics,
            };
            expose::encode(&scrape.families, format, Escaping::Underscores, &mut text);
            let written = write_stdout(text.as_bytes());
            exit.release((scrape, text));
            written
        }
        Command::Inspect { dir, json } => {
            let dir = dir.resolve()?;
            let report = inspect::inspect(&dir).map_err(Failure::Failed)?;
            let out = if json { inspect::to_json(&dir, &report) } else { inspect::to_table(&report) };
            write_stdout(out.as_bytes())
        }
        Command::Serve {
            dir,
            listen,
            auth,
            tls_cert,
            tls_key,
            max_connections,
            compact_interval,
            compact_min_dead_files,
            process_metrics,
        } => {
            let dir = dir.resolve()?;
            let collector = Collector::new(&dir).map_err(failed)?.with_process_metrics(process_metrics);
            let _compactor = match compact_interval {
                Some(secs) => {
                    let interval = Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| Failure::Usage(format!("--compact-interval {secs}: expected seconds > 0")))?;
                    let policy = cleanup::AutoCompact::every(interval).min_dead_files(compact_min_dead_files);
                    Some(cleanup::spawn_auto_compaction(&dir, policy).map_err(failed)?)
                }
                None => None,
            };
            let mut config = ServeConfig::new().listen(listen).max_connections(max_connections);
            if let Some(auth) = auth.resolve()? {
                config = config.basic_auth(auth);
            }
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                #[cfg(feature = "tls")]
                {
                    config = config.tls(serve::TlsFiles::new(cert, key));
                }
                #[cfg(not(feature = "tls"))]
                return Err(Failure::Usage(format!(
                    "--tls-cert {} --tls-key {}: this build has no TLS (cargo feature `tls`)",
                    cert.display(),
                    key.display()
                )));
            }
            let server = serve::serve(collector, config).map_err(failed)?;
            eprintln!("serving the metrics of {} at {}", dir.display(), server.url());
            server.run_until_signal().map_err(failed)
        }
        Command::MarkDead { id, dir, force } => {
            let dir = dir.resolve()?;
            let id = WorkerId::new(&id).map_err(|e| Failure::Usage(chain(&e)))?;
            if !dir.is_dir() {
                return Err(Failure::Failed(format!("{} is not a readable directory", dir.display())));
            }
            let removed = if force {
                cleanup::force_mark_process_dead(&dir, id.as_str())
            } else {
                cleanup::mark_process_dead(&dir, id.as_str())
            };
            let removed = removed.map_err(|e| match e.kind() {
                ErrorKind::WorkerIdInUse => Failure::Failed(format!(
                    "worker {} is alive (it holds its liveness lock); pass --force to mark it dead anyway",
                    id.as_str()
                )),
                _ => failed(e),
            })?;
            eprintln!("worker {}: removed {removed} file(s)", id.as_str());
            Ok(())
        }
        Command::Clear { dir } => {
            let dir = dir.resolve()?;
            let cleared = cleanup::clear_directory(&dir).map_err(failed)?;
            for name in &cleared.left {
                eprintln!("warning: left {name} in place: not a regular file or a symlink");
            }
            eprintln!("removed {} file(s) from {}", cleared.removed.len(), dir.display());
            Ok(())
        }
        Command::Push { dir, gateway, job, labels, method, timeout, auth } => {
            let scrape = scrape(&dir.resolve()?, exit)?;
            let method = match method {
                MethodArg::Put => PushMethod::Put,
                MethodArg::Post => PushMethod::Post,
            };
            let mut config = PushConfig::new(gateway, job).method(method).timeout(Duration::from_secs(timeout));
            for (k, v) in labels {
                config = config.label(k, v);
            }
            if let Some(auth) = auth.resolve()? {
                config = config.basic_auth(auth);
            }
            let url = config.url().map_err(|e| Failure::Usage(chain(&e)))?;
            push::push(&scrape, &config).map_err(failed)?;
            eprintln!("pushed {} metric families to {url} ({method:?})", scrape.families.len());
            Ok(())
        }
        Command::Compact { dir, min_dead_files, json } => {
            let dir = dir.resolve()?;
            if !dir.is_dir() {
                return Err(Failure::Failed(format!("{} is not a readable directory", dir.display())));
            }
            let done = cleanup::compact_with(&dir, cleanup::CompactOptions::default().min_dead_files(min_dead_files))
                .map_err(failed)?;
            for (name, why) in &done.unreadable {
                eprintln!("warning: left {name} in place: {why}");
            }
            let unreadable: Vec<String> = done.unreadable.iter().map(|(name, _)| name.clone()).collect();
            let out = if json {
                let value = serde_json::json!({
                    "dead_writers": done.dead_writers,
                    "archives": done.archives,
                    "removed": done.removed,
                    "kept": done.kept,
                    "unreadable": done.unreadable.iter().map(|(name, why)| serde_json::json!({"file": name, "problem": why})).collect::<Vec<_>>(),
                    "deferred": done.deferred,
                });
                format!("{value:#}\n")
            } else {
                format!(
                    "dead writers folded: {}\narchives written: {}\nfiles removed: {}\nfiles kept: {}\n\
                     files left unreadable: {}\nwriters deferred (pid in use): {}\n",
                    list(&done.dead_writers),
                    list(&done.archives),
                    list(&done.removed),
                    list(&done.kept),
                    list(&unreadable),
                    list(&done.deferred)
                )
            };
            write_stdout(out.as_bytes())
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

impl DirArg {
    fn resolve(self) -> Result<PathBuf, Failure> {
        match self.dir {
            Some(dir) => Ok(dir),
            None => {
                dir_from_env().map_err(|_| Failure::Usage(format!("no metrics directory: pass --dir or set {DIR_ENV}")))
            }
        }
    }
}

impl AuthArgs {
    fn resolve(self) -> Result<Option<BasicAuth>, Failure> {
        match (self.basic_auth_user, self.basic_auth_password_file) {
            (Some(user), Some(file)) => BasicAuth::from_password_file(user, file).map(Some).map_err(failed),
            _ => Ok(None),
        }
    }
}

/// Collects `dir`, warning on stderr about every skipped file. The collector is
/// released as `exit` says: it holds no lock and writes nothing, so leaving it to the
/// process exit loses nothing.
fn scrape(dir: &Path, exit: Exit) -> Result<Scrape, Failure> {
    let collector = Collector::new(dir).map_err(failed)?;
    let scrape = collector.collect().map_err(failed);
    exit.release(collector);
    let scrape = scrape?;
    for skipped in &scrape.skipped {
        eprintln!("warning: skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    Ok(scrape)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Failed(format!("cannot write: {e}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Opts, Registry, WorkerId};

    /// Mappings of files under `dir` in this process.
    fn mappings_under(dir: &std::path::Path) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().filter(|line| line.contains(dir.to_str().unwrap())).count()
    }

    #[test]
    fn main_in_a_process_that_goes_on_leaves_no_mapping_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A live writer: a collector keeps its file mapped between scrapes.
        let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("1").unwrap()).build().unwrap();
        registry.counter(Opts::new("c_total", "C.")).unwrap().inc();
        let before = mappings_under(dir.path());
        for _ in 0..3 {
            assert_eq!(super::main(["prometheus-multiproc", "scrape", "--dir", dir.path().to_str().unwrap()]), 0);
        }
        assert_eq!(mappings_under(dir.path()), before, "the scrapes' mappings are gone");
    }
}
