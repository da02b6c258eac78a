//! A pre-fork HTTP server with multiprocess metrics: the shape of gunicorn, unicorn or
//! a Rust server that forks workers sharing one listening socket.
//!
//! ```text
//! cargo run --release --example prefork_server                  # serve until Ctrl-C
//! cargo run --release --example prefork_server -- --load 1000   # and send 1,000 requests
//! ```
//!
//! Options: `--workers N` (4), `--listen ADDR` (127.0.0.1:8080), `--metrics-listen ADDR`
//! (127.0.0.1:9464), `--load N`, `--concurrency C` (8), `--exit-after-load`.
//!
//! # Processes
//!
//! ```text
//!  master (no threads, ever)
//!   ├─ binds the app socket and the metrics socket, clears the directory
//!   ├─ worker w1 ┐
//!   ├─ worker w2 ├─ accept on the shared app socket; each writes counter_wN.db,
//!   ├─ …         ┘  histogram_wN.db, gauge_livesum_wN.db
//!   ├─ exporter     serves /metrics on the metrics socket: merges the directory
//!   └─ loader       (--load) sends requests, then scrapes /metrics and prints the total
//! ```
//!
//! * **Fork safety.** `fork()` copies only the calling thread, so a process with other
//!   threads (a tokio runtime, an HTTP server, a logger thread) can leave locks held
//!   forever in the child. The master therefore never starts a thread: it only binds
//!   sockets, forks, reaps and handles signals through atomic flags. Everything with
//!   threads (the workers' runtimes, the `/metrics` server) runs in children created
//!   after the fork, which is why `/metrics` is served by a dedicated **exporter**
//!   child rather than by the master. The master checks `/proc/self/task` before each
//!   fork.
//! * **Stable worker IDs.** Worker `N` writes under the ID `wN` (set after the fork),
//!   so a worker that dies and is respawned in its slot continues the same files and
//!   the counters never go back. The master reaps a dead worker, calls
//!   `cleanup::mark_process_dead` (its live-sum in-flight gauge leaves the scrape) and
//!   respawns it.
//! * **Shutdown.** SIGTERM or SIGINT: the master sends SIGTERM to every child; workers
//!   finish their requests in flight; after 10 s stragglers get SIGKILL.
//! * **Directory.** `$PROMETHEUS_MULTIPROC_DIR`, or a temporary directory removed on
//!   exit. It is cleared of a previous run's files on boot (`cleanup::clear_directory`).
//!
//! # Metrics
//!
//! * `app_requests_total{route, status}`: counter;
//! * `app_request_duration_seconds{route, status}`: histogram, default buckets;
//! * `app_requests_in_flight`: gauge, `livesum` mode (only live workers count);
//! * `process_cpu_seconds_total`, `process_resident_memory_bytes`, ... `{worker}`: the
//!   exporter reads every live worker's from `/proc` at each scrape.

use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use prometheus_multiproc::serve::{ServeConfig, serve_listener};
use prometheus_multiproc::{
    Collector, Counter, DEFAULT_BUCKETS, Family, Gauge, GaugeMode, Histogram, Opts, Registry, WorkerId, cleanup,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Routes the app serves; the loader cycles through them.
const ROUTES: [&str; 3] = ["/", "/slow", "/error"];

/// How long `/slow` takes.
const SLOW: Duration = Duration::from_millis(50);

/// How long children get to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    workers: usize,
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    load: Option<usize>,
    concurrency: usize,
    exit_after_load: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        workers: 4,
        listen: "127.0.0.1:8080".parse().unwrap(),
        metrics_listen: "127.0.0.1:9464".parse().unwrap(),
        load: None,
        concurrency: 8,
        exit_after_load: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--workers" => o.workers = value("--workers")?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--listen" => o.listen = value("--listen")?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--metrics-listen" => {
                o.metrics_listen = value("--metrics-listen")?.parse().map_err(|e| format!("--metrics-listen: {e}"))?
            }
            "--load" => o.load = Some(value("--load")?.parse().map_err(|e| format!("--load: {e}"))?),
            "--concurrency" => {
                o.concurrency = value("--concurrency")?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--exit-after-load" => o.exit_after_load = true,
            "-h" | "--help" => {
                println!(
                    "usage: prefork_server [--workers N] [--listen ADDR] [--metrics-listen ADDR] \
                     [--load N [--concurrency C] [--exit-after-load]]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    if o.workers == 0 || o.concurrency == 0 {
        return Err("--workers and --concurrency must be at least 1".into());
    }
    if o.exit_after_load && o.load.is_none() {
        return Err("--exit-after-load needs --load N".into());
    }
    Ok(o)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("prefork_server: {e}");
            std::process::exit(2);
        }
    };
    let code = match master(&options) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prefork_server: {e}");
            1
        }
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------
// Master: binds, forks, reaps, respawns. Never starts a thread.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Worker(usize),
    Exporter,
    Loader,
}

/// The master's children and when each started.
struct Children {
    running: Vec<(Pid, Role, Instant)>,
    /// Roles to respawn, and not before when (a child that dies at once is not
    /// respawned in a tight loop).
    pending: Vec<(Role, Instant)>,
}

fn master(o: &Options) -> Result<i32, BoxError> {
    // The directory: $PROMETHEUS_MULTIPROC_DIR, or a temporary one removed on exit.
    let (dir, temp_dir) = match prometheus_multiproc::dir_from_env() {
        Ok(dir) => (dir, None),
        Err(_) => {
            let temp = tempfile::Builder::new().prefix("prefork-metrics-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let cleared = cleanup::clear_directory(&dir)?;
    let app = TcpListener::bind(o.listen).map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
    let metrics =
        TcpListener::bind(o.metrics_listen).map_err(|e| format!("cannot listen on {}: {e}", o.metrics_listen))?;
    let (app_addr, metrics_addr) = (app.local_addr()?, metrics.local_addr()?);

    // SIGTERM/SIGINT set `stop`. In children that keep no handler of their own (the
    // loader), `die` makes them take the default action again.
    let stop = Arc::new(AtomicBool::new(false));
    let die = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_default(signal, Arc::clone(&die))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }

    println!("prefork_server: master pid {}, {} workers", std::process::id(), o.workers);
    println!("  app:       http://{app_addr}/  (routes: /, /slow, /error)");
    println!("  metrics:   http://{metrics_addr}/metrics");
    let temporary = if temp_dir.is_some() { " (temporary, removed on exit)" } else { "" };
    println!("  directory: {}{temporary}, {} old files cleared", dir.display(), cleared.removed.len());
    std::io::stdout().flush()?;

    let spawn = |role: Role| -> Result<Pid, BoxError> {
        fork_child(|| match role {
            Role::Worker(slot) => worker(slot, &app, &dir),
            Role::Exporter => exporter(&metrics, &dir),
            Role::Loader => {
                die.store(true, Ordering::SeqCst);
                loader(app_addr, metrics_addr, o.load.unwrap_or(0), o.concurrency)
            }
        })
    };
    let mut children = Children { running: Vec::new(), pending: Vec::new() };
    let now = Instant::now();
    children.pending.push((Role::Exporter, now));
    children.pending.extend((1..=o.workers).map(|slot| (Role::Worker(slot), now)));
    if o.load.is_some() {
        children.pending.push((Role::Loader, now));
    }

    let mut exit_code = 0;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = children.pending.drain(..).partition(|(_, at)| *at <= now);
        children.pending = later;
        for (role, _) in due {
            let pid = spawn(role)?;
            children.running.push((pid, role, Instant::now()));
        }
        // Reap every child that exited.
        while let Some((pid, status)) = reap()? {
            let Some(i) = children.running.iter().position(|(p, ..)| *p == pid) else { continue };
            let (_, role, started) = children.running.swap_remove(i);
            match role {
                Role::Worker(slot) => {
                    let id = format!("w{slot}");
                    let removed = cleanup::mark_process_dead(&dir, &id)?;
                    println!(
                        "prefork_server: worker {id} (pid {pid}) {}; marked dead ({removed} files), respawning",
                        describe(status)
                    );
                    let delay = if started.elapsed() < Duration::from_secs(1) {
                        Duration::from_secs(1)
                    } else {
                        Duration::ZERO
                    };
                    children.pending.push((role, Instant::now() + delay));
                }
                Role::Exporter => {
                    println!("prefork_server: exporter (pid {pid}) {}; respawning", describe(status));
                    children.pending.push((role, Instant::now() + Duration::from_secs(1)));
                }
                Role::Loader => {
                    let code = match status {
                        WaitStatus::Exited(_, code) => code,
                        _ => 1,
                    };
                    if o.exit_after_load {
                        exit_code = code;
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    println!("prefork_server: shutting down");
    for (pid, ..) in &children.running {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !children.running.is_empty() {
        if Instant::now() > deadline {
            for (pid, ..) in &children.running {
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
        match reap()? {
            Some((pid, _)) => {
                if let Some(i) = children.running.iter().position(|(p, ..)| *p == pid)
                    && let (_, Role::Worker(slot), _) = children.running.swap_remove(i)
                {
                    cleanup::mark_process_dead(&dir, &format!("w{slot}"))?;
                }
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    println!("prefork_server: stopped");
    Ok(exit_code)
}

/// One exited child, if any, without blocking.
fn reap() -> nix::Result<Option<(Pid, WaitStatus)>> {
    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => Ok(None),
        Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, ..))) => Ok(Some((pid, status))),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
        other => format!("{other:?}"),
    }
}

/// Forks; the child runs `child` and exits with its status, never returning here (and
/// never running the master's destructors, such as the temporary directory's).
#[allow(unsafe_code)]
fn fork_child(child: impl FnOnce() -> i32) -> Result<Pid, BoxError> {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count).unwrap_or(1);
    if threads != 1 {
        return Err(format!("the master has {threads} threads; forking now would not be safe").into());
    }
    std::io::stdout().flush()?;
    // SAFETY: POSIX allows a child of a multi-threaded process to call only
    // async-signal-safe functions until it execs, because the other threads' locks
    // (malloc, stdio, runtimes) are copied in whatever state they were. The master has
    // exactly one thread, checked just above (it never spawns one: it only binds, forks,
    // sleeps, reaps and handles signals through atomic flags), so no lock can be held
    // by a thread that does not exist in the child, and the child may run any code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = child();
            let _ = std::io::stdout().flush();
            std::process::exit(code)
        }
    }
}

// ---------------------------------------------------------------------------------
// Exporter: serves the merged directory at /metrics.

fn exporter(listener: &TcpListener, dir: &Path) -> i32 {
    let run = || -> Result<(), BoxError> {
        // Per-worker CPU, memory and descriptors too, read from /proc at each scrape.
        let collector = Collector::new(dir)?.with_process_metrics(true);
        let server = serve_listener(collector, listener.try_clone()?, ServeConfig::new())?;
        server.run_until_signal()?;
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("prefork_server: exporter: {e}");
            1
        }
    }
}

// ---------------------------------------------------------------------------------
// Worker: the app, with its metrics.

struct AppMetrics {
    requests: Family<Counter>,
    latency: Family<Histogram>,
    in_flight: Gauge,
}

fn worker(slot: usize, listener: &TcpListener, dir: &Path) -> i32 {
    match run_worker(slot, listener, dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("prefork_server: worker w{slot}: {e}");
            1
        }
    }
}

fn run_worker(slot: usize, listener: &TcpListener, dir: &Path) -> Result<(), BoxError> {
    // Created after the fork, under the slot's stable ID.
    let registry = Registry::builder().dir(dir).worker_id(WorkerId::new(&format!("w{slot}"))?).build()?;
    let metrics = Arc::new(AppMetrics {
        requests: registry.counter_family(
            Opts::new("app_requests_total", "HTTP requests handled, by route and status."),
            &["route", "status"],
        )?,
        latency: registry.histogram_family(
            Opts::new("app_request_duration_seconds", "HTTP request latency, by route and status."),
            &DEFAULT_BUCKETS,
            &["route", "status"],
        )?,
        in_flight: registry
            .gauge(Opts::new("app_requests_in_flight", "HTTP requests being handled."), GaugeMode::LiveSum)?,
    });
    let listener = listener.try_clone()?;
    listener.set_nonblocking(true)?;
    // The runtime is created in the child, after the fork.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        eprintln!("prefork_server: worker w{slot}: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            };
            let (metrics, mut stop) = (Arc::clone(&metrics), stop_rx.clone());
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, Infallible>(handle(slot, &metrics, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = stop.wait_for(|s| *s) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            });
            while connections.try_join_next().is_some() {}
        }
        // Stop accepting; let requests in flight finish.
        drop(listener);
        stop_tx.send_replace(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(6), async { while connections.join_next().await.is_some() {} })
                .await;
        Ok::<(), BoxError>(())
    })?;
    drop(registry);
    Ok(())
}

async fn handle(slot: usize, m: &AppMetrics, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let start = Instant::now();
    // Down again however the request ends, even if the client goes away mid-request.
    let _in_flight = m.in_flight.track_inprogress();
    let (route, status, body) = match req.uri().path() {
        "/" => ("/", StatusCode::OK, format!("hello from worker w{slot} (pid {})\n", std::process::id())),
        "/slow" => {
            tokio::time::sleep(SLOW).await;
            ("/slow", StatusCode::OK, format!("slow hello from worker w{slot}\n"))
        }
        "/error" => ("/error", StatusCode::INTERNAL_SERVER_ERROR, "simulated failure\n".to_owned()),
        // One label value for every unknown path keeps the label set bounded.
        _ => ("other", StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    // Recorded before the response leaves, so a client that got its answer finds it
    // counted in the next scrape.
    // Infallible: a series that cannot be created drops its writes and is counted.
    m.requests.labels(&[route, status.as_str()]).inc();
    m.latency.labels(&[route, status.as_str()]).observe(start.elapsed().as_secs_f64());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

// ---------------------------------------------------------------------------------
// Loader: sends requests, then reads the aggregated counter from /metrics.

fn loader(app: SocketAddr, metrics: SocketAddr, total: usize, concurrency: usize) -> i32 {
    let run = || -> Result<bool, BoxError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let started = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let statuses: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..concurrency.min(total.max(1)) {
                let (next, statuses) = (Arc::clone(&next), Arc::clone(&statuses));
                clients.spawn(async move {
                    let mut conn = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return Ok::<(), BoxError>(());
                        }
                        let path = ROUTES[i % ROUTES.len()];
                        let status = get(&mut conn, app, path).await?;
                        let bucket = match status.as_u16() {
                            200 => 0,
                            500 => 1,
                            _ => 2,
                        };
                        statuses[bucket].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while let Some(done) = clients.join_next().await {
                done??;
            }
            let elapsed = started.elapsed();
            let text = String::from_utf8(fetch(metrics, "/metrics").await?)?;
            let counted = sum_samples(&text, "app_requests_total");
            let [ok, err, other] = [0, 1, 2].map(|i| statuses[i].load(Ordering::Relaxed));
            println!(
                "load: sent {total} requests in {:.2}s ({:.0}/s; {ok} ok, {err} 500 from /error, {other} other), \
                 {concurrency} connections",
                elapsed.as_secs_f64(),
                total as f64 / elapsed.as_secs_f64().max(1e-9),
            );
            println!(
                "load: app_requests_total from http://{metrics}/metrics (sum over routes and statuses) = {counted}"
            );
            Ok(counted == total as f64 && other == 0)
        })
    };
    match run() {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("load: the aggregated counter does not match the requests sent");
            1
        }
        Err(e) => {
            eprintln!("load: {e}");
            1
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// GET `path` on a kept-alive connection, reconnecting once if it was closed.
async fn get(conn: &mut Option<Sender>, addr: SocketAddr, path: &str) -> Result<StatusCode, BoxError> {
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(connect(addr).await?);
        }
        let sender = conn.as_mut().expect("connected above");
        let request = Request::get(path).header("host", addr.to_string()).body(Full::new(Bytes::new()))?;
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await?;
                return Ok(status);
            }
            // A kept-alive connection the worker closed: retry once on a new one.
            Err(e) if attempt == 0 && e.is_canceled() => *conn = None,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the second attempt returns")
}

async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<Vec<u8>, BoxError> {
    let mut sender = connect(addr).await?;
    let request = Request::get(path).header("host", addr.to_string()).body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        return Err(format!("GET http://{addr}{path}: {}", response.status()).into());
    }
    Ok(response.into_body().collect().await?.to_bytes().to_vec())
}

/// The sum of every sample of `name` (any labels) in a text exposition.
fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
