//! An axum app served by N forked workers sharing one listener, with the tower layer
//! recording request metrics and the aggregated `/metrics` of every worker.
//!
//! ```sh
//! cargo run --example axum_prefork --features axum -- 4   # 4 workers on 127.0.0.1:8081
//! curl http://127.0.0.1:8081/users/7
//! curl http://127.0.0.1:8081/metrics                      # every worker's counts, merged
//! ```
//!
//! The master binds the listener, forks the workers and respawns any that dies, in the
//! same slot (worker ID `axum-N`), so counts continue where the dead worker left
//! them. It starts no thread and no runtime: forking is safe. Each worker builds its
//! own tokio runtime after `fork()`. Stop it with Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use prometheus_multiproc::integrations::axum::metrics_router;
use prometheus_multiproc::integrations::tower::HttpMetricsLayer;
use prometheus_multiproc::{Collector, Registry, WorkerId};

#[allow(unsafe_code)] // set_var in a single-threaded master
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = std::env::args().nth(1).map_or(Ok(2), |n| n.parse())?;
    let _temp; // a temporary directory when PROMETHEUS_MULTIPROC_DIR is not set
    if std::env::var_os("PROMETHEUS_MULTIPROC_DIR").is_none() {
        _temp = tempfile::tempdir()?;
        // SAFETY: the master has one thread; nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROMETHEUS_MULTIPROC_DIR", _temp.path()) };
    }
    let dir = prometheus_multiproc::dir_from_env()?;
    prometheus_multiproc::cleanup::clear_directory(&dir)?; // before any worker starts
    let listener = std::net::TcpListener::bind("127.0.0.1:8081")?;
    println!("app and metrics on http://{}/ (metrics directory {})", listener.local_addr()?, dir.display());

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let mut slots: Vec<Pid> = (0..workers).map(|slot| spawn(&listener, slot)).collect::<Result<_, _>>()?;
    while !stop.load(Ordering::Relaxed) {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, ..)) => {
                if let Some(slot) = slots.iter().position(|p| *p == pid) {
                    eprintln!("worker axum-{slot} ({pid}) died; respawning it in the same slot");
                    slots[slot] = spawn(&listener, slot)?;
                }
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    for pid in slots {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = waitpid(pid, None);
    }
    Ok(())
}

/// Forks a worker for `slot`; the master gets its pid.
#[allow(unsafe_code)] // fork
fn spawn(listener: &std::net::TcpListener, slot: usize) -> Result<Pid, Box<dyn std::error::Error>> {
    // SAFETY: the master is single-threaded (no runtime, no thread was started), so the
    // child is a complete copy and may run any code.
    let forked = unsafe { nix::unistd::fork() }?;
    match forked {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = match worker(listener.try_clone().expect("dup the listener"), slot) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("worker axum-{slot}: {err}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

fn worker(listener: std::net::TcpListener, slot: usize) -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::builder().worker_id(WorkerId::new(&format!("axum-{slot}"))?).build()?;
    let collector = Arc::new(Collector::from_env()?.with_process_metrics(true));
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/users/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { format!("user {id}\n") }),
        )
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such page\n") })
        .layer(HttpMetricsLayer::new(&registry)?)
        .merge(metrics_router(collector));
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {},
                    _ = term.recv() => {},
                }
            })
            .await?;
        Ok(())
    })
}
