//! The tower layer and the axum `/metrics` handler in a real axum server run by two
//! forked workers sharing one listener, driven by a real HTTP client (hyper). This
//! binary re-runs itself as the server (`PMP_TEST_ROLE`), so nothing forks inside the
//! multi-threaded test harness.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::integrations::axum::metrics_router;
use prometheus_multiproc::integrations::tower::HttpMetricsLayer;
use prometheus_multiproc::{Collector, Registry, WorkerId};
use support::{TestDir, fork, role_command};

fn main() {
    let tests = vec![Trial::test(
        "two_forked_axum_workers_count_exactly_by_route_template_and_status",
        two_forked_axum_workers_count_exactly_by_route_template_and_status,
    )];
    support::main_with_roles(run_role, tests)
}

fn run_role(role: &str) {
    match role {
        // Binds a listener, prints its port, forks two workers serving the app on it,
        // and waits for them (the test kills the whole process group).
        "axum-master" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            println!("{}", listener.local_addr().unwrap().port());
            let mut workers = Vec::new();
            for i in 0..2 {
                match fork() {
                    nix::unistd::ForkResult::Child => {
                        serve_worker(listener, i);
                        std::process::exit(0);
                    }
                    nix::unistd::ForkResult::Parent { child } => workers.push(child),
                }
            }
            for worker in workers {
                let _ = nix::sys::wait::waitpid(worker, None);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// One worker: its own registry (worker ID `aw0`, `aw1`), the app with the layer, and
/// the aggregated `/metrics` outside the layer.
fn serve_worker(listener: std::net::TcpListener, i: usize) {
    let registry = Registry::builder().worker_id(WorkerId::new(&format!("aw{i}")).unwrap()).build().unwrap();
    let collector = Arc::new(Collector::new(registry.dir()).unwrap());
    let app = Router::new()
        .route("/users/{id}", get(|| async { "a user\n" }))
        .route("/slow", get(|| async { tokio::time::sleep(Duration::from_millis(20)).await }))
        // An explicit fallback, set before the layer, so that 404s are counted too.
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such page\n") })
        .layer(HttpMetricsLayer::new(&registry).unwrap())
        .merge(metrics_router(collector));
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

/// The server's process group, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// One request on a fresh connection; the status, the headers and the body.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, hyper::HeaderMap, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = sender.send_request(builder.body(Empty::<Bytes>::new())?).await?;
    let (parts, body) = response.into_parts();
    Ok((parts.status.as_u16(), parts.headers, body.collect().await?.to_bytes().to_vec()))
}

fn two_forked_axum_workers_count_exactly_by_route_template_and_status() -> Result<(), Failed> {
    let dir = TestDir::new();
    let mut cmd = role_command("axum-master", dir.path());
    cmd.stdout(Stdio::piped()).process_group(0);
    let mut server = Server(cmd.spawn()?);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let port: u16 = line.trim().parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // Wait (bounded) until a worker answers.
        let mut ready = false;
        for _ in 0..500 {
            if request(port, "GET", "/metrics", &[]).await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !ready {
            return Err::<(), Failed>("no worker answered within 5 s".into());
        }
        for i in 0..30 {
            let (status, _, body) = request(port, "GET", &format!("/users/{i}"), &[]).await?;
            if status != 200 || body != b"a user\n" {
                return Err(format!("GET /users/{i}: {status}").into());
            }
        }
        for i in 0..10 {
            let (status, ..) = request(port, "GET", &format!("/no/such/page/{i}"), &[]).await?;
            if status != 404 {
                return Err(format!("a missing page answered {status}").into());
            }
        }
        for _ in 0..5 {
            let (status, ..) = request(port, "POST", "/users/7", &[]).await?;
            if status != 405 {
                return Err(format!("POST on a GET route answered {status}").into());
            }
        }
        let slow: Vec<_> = (0..8).map(|_| tokio::spawn(request(port, "GET", "/slow", &[]))).collect();
        for call in slow {
            let (status, ..) = call.await??;
            if status != 200 {
                return Err(format!("GET /slow answered {status}").into());
            }
        }
        let (status, headers, body) = request(port, "GET", "/metrics", &[]).await?;
        let page = String::from_utf8(body)?;
        if status != 200 || headers.get("content-type").is_none_or(|v| !v.to_str().unwrap().starts_with("text/plain")) {
            return Err(format!("/metrics answered {status} {headers:?}").into());
        }
        for want in [
            "http_requests_total{method=\"GET\",route=\"/users/{id}\",status=\"200\"} 30.0",
            "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 10.0",
            "http_requests_total{method=\"POST\",route=\"/users/{id}\",status=\"405\"} 5.0",
            "http_requests_total{method=\"GET\",route=\"/slow\",status=\"200\"} 8.0",
            "http_request_duration_seconds_count{method=\"GET\",route=\"/users/{id}\",status=\"200\"} 30.0",
            "http_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",route=\"/slow\",status=\"200\"} 0.0",
            "http_requests_in_flight 0.0",
        ] {
            if !page.lines().any(|l| l == want) {
                return Err(format!("missing {want:?} in:\n{page}").into());
            }
        }
        if page.contains("/metrics") || page.contains("/no/such") || page.contains("route=\"/users/1") {
            return Err(format!("a raw path or /metrics itself became a label:\n{page}").into());
        }
        // Gzip when asked, OpenMetrics when asked.
        let (_, headers, body) = request(port, "GET", "/metrics", &[("accept-encoding", "gzip")]).await?;
        if headers.get("content-encoding").map(|v| v.as_bytes()) != Some(b"gzip")
            || body.get(..2) != Some(&[0x1f, 0x8b])
        {
            return Err(format!("no gzip: {headers:?}").into());
        }
        let (_, headers, body) =
            request(port, "GET", "/metrics", &[("accept", "application/openmetrics-text; version=1.0.0")]).await?;
        if !headers["content-type"].to_str()?.starts_with("application/openmetrics-text") || !body.ends_with(b"# EOF\n")
        {
            return Err(format!("no OpenMetrics: {headers:?}").into());
        }
        Ok(())
    })
}
