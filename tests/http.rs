//! The `/metrics` endpoint over real HTTP on loopback: negotiation, methods, paths,
//! basic auth, TLS, hostile clients, and the Pushgateway client against a recording
//! server.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_multiproc::push::{PushConfig, PushErrorKind, PushMethod, push};
use prometheus_multiproc::serve::{BasicAuth, ServeConfig, ServeErrorKind, Server, TlsFiles, serve};
use prometheus_multiproc::{Collector, DEFAULT_BUCKETS, Opts, Registry, render};
use support::TestDir;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A directory with a counter and a histogram, and a collector over it.
fn metrics_dir() -> (TestDir, Registry) {
    let dir = TestDir::new();
    let registry = Registry::builder().dir(dir.path()).build().unwrap();
    let jobs = registry.counter_family(Opts::new("jobs_total", "Jobs done."), &["queue"]).unwrap();
    jobs.get(&["fast"]).unwrap().inc_by(3.0);
    jobs.get(&["slow"]).unwrap().inc();
    let latency = registry.histogram(Opts::new("latency_seconds", "Latency."), &DEFAULT_BUCKETS).unwrap();
    latency.observe(0.2);
    (dir, registry)
}

fn local() -> ServeConfig {
    ServeConfig::new().listen("127.0.0.1:0".parse().unwrap())
}

fn start(dir: &TestDir, config: ServeConfig) -> Server {
    serve(Collector::new(dir.path()).unwrap(), config).unwrap()
}

/// What the endpoint should send for these headers: the library's own rendering.
fn expected(dir: &TestDir, accept: Option<&str>, accept_encoding: Option<&str>) -> Vec<u8> {
    render(&Collector::new(dir.path()).unwrap().collect().unwrap(), accept, accept_encoding).body
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Sends one request over `io` with hyper's client and reads the whole answer.
async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Answer
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes().to_vec() }
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header(header::HOST, "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn send(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let req = request(method, path, headers);
    runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        exchange(stream, req).await
    })
}

fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Answer {
    send(addr, Method::GET, "/metrics", headers)
}

fn header_of(answer: &Answer, name: header::HeaderName) -> Option<&str> {
    answer.headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn text_is_the_default_and_openmetrics_when_asked() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let addr = server.local_addr();

    let text = get(addr, &[]);
    assert_eq!(text.status, StatusCode::OK);
    assert_eq!(header_of(&text, header::CONTENT_TYPE), Some(TEXT));
    assert_eq!(header_of(&text, header::CONTENT_ENCODING), None);
    assert_eq!(text.body, expected(&dir, None, None));
    let body = String::from_utf8(text.body).unwrap();
    assert!(body.contains("jobs_total{queue=\"fast\"} 3.0\n"), "{body}");
    assert!(body.contains("latency_seconds_count 1.0\n"), "{body}");

    let prometheus_3 = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    let om = get(addr, &[("accept", prometheus_3)]);
    assert_eq!(om.status, StatusCode::OK);
    assert_eq!(header_of(&om, header::CONTENT_TYPE), Some(format!("{OPENMETRICS}; escaping=underscores").as_str()));
    assert_eq!(om.body, expected(&dir, Some(prometheus_3), None));
    assert!(om.body.ends_with(b"# EOF\n"));

    let unversioned = get(addr, &[("accept", "application/openmetrics-text")]);
    assert_eq!(header_of(&unversioned, header::CONTENT_TYPE), Some(OPENMETRICS));
    server.shutdown().unwrap();
}

#[test]
fn gzip_when_the_client_accepts_it() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let zipped = get(server.local_addr(), &[("accept-encoding", "gzip, deflate")]);
    assert_eq!(zipped.status, StatusCode::OK);
    assert_eq!(header_of(&zipped, header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(header_of(&zipped, header::CONTENT_TYPE), Some(TEXT));
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..]).read_to_end(&mut plain).unwrap();
    assert_eq!(plain, expected(&dir, None, None));

    let refused = get(server.local_addr(), &[("accept-encoding", "gzip;q=0, identity")]);
    assert_eq!(header_of(&refused, header::CONTENT_ENCODING), None);
    assert_eq!(refused.body, expected(&dir, None, None));
}

#[test]
fn head_sends_the_headers_of_get_without_a_body() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let head = send(server.local_addr(), Method::HEAD, "/metrics", &[]);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header_of(&head, header::CONTENT_TYPE), Some(TEXT));
    let length = expected(&dir, None, None).len().to_string();
    assert_eq!(header_of(&head, header::CONTENT_LENGTH), Some(length.as_str()));
    assert!(head.body.is_empty());
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let addr = server.local_addr();
    for path in ["/", "/metrics/", "/metricsx", "/debug/pprof", "/../metrics"] {
        let answer = send(addr, Method::GET, path, &[]);
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("jobs"), "{path}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::PATCH] {
        let answer = send(addr, method.clone(), "/metrics", &[]);
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header_of(&answer, header::ALLOW), Some("GET, HEAD"), "{method}");
    }
    // A query string does not change the path.
    assert_eq!(send(addr, Method::GET, "/metrics?x=1", &[]).status, StatusCode::OK);
}

#[test]
fn basic_auth_admits_only_the_right_credentials() {
    let (dir, _registry) = metrics_dir();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "correct horse\n").unwrap();
    let auth = BasicAuth::from_password_file("prometheus", &password_file).unwrap();
    let server = start(&dir, local().basic_auth(auth));
    let addr = server.local_addr();
    let basic = |plain: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain))
    };

    let none = get(addr, &[]);
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header_of(&none, header::WWW_AUTHENTICATE), Some("Basic realm=\"metrics\", charset=\"UTF-8\""));
    assert!(!String::from_utf8_lossy(&none.body).contains("jobs"));
    for wrong in ["prometheus:correct horse\n", "prometheus:correct", "Prometheus:correct horse", "prometheus:", ""] {
        let answer = get(addr, &[("authorization", &basic(wrong))]);
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    assert_eq!(get(addr, &[("authorization", "Bearer prometheus:correct horse")]).status, StatusCode::UNAUTHORIZED);

    let right = get(addr, &[("authorization", &basic("prometheus:correct horse"))]);
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(right.body, expected(&dir, None, None));
    // Without credentials a client cannot even tell which paths exist.
    assert_eq!(send(addr, Method::GET, "/nope", &[]).status, StatusCode::UNAUTHORIZED);
    let authorized_404 = send(addr, Method::GET, "/nope", &[("authorization", &basic("prometheus:correct horse"))]);
    assert_eq!(authorized_404.status, StatusCode::NOT_FOUND);
}

#[test]
fn tls_serves_metrics_with_a_self_signed_certificate() {
    let (dir, _registry) = metrics_dir();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();

    let server = start(&dir, local().tls(TlsFiles::new(&cert_path, &key_path)));
    let addr = server.local_addr();
    assert!(server.url().starts_with("https://127.0.0.1:"), "{}", server.url());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let answer = runtime().block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, stream).await.unwrap();
        exchange(tls, request(Method::GET, "/metrics", &[])).await
    });
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, expected(&dir, None, None));

    // Plain HTTP to the TLS port gets no HTTP answer, only a closed connection.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&reply));
    server.shutdown().unwrap();

    // A missing key is reported at start, naming the file.
    let missing = dir.path().join("missing-key.pem");
    let err = serve(Collector::new(dir.path()).unwrap(), local().tls(TlsFiles::new(&cert_path, &missing))).unwrap_err();
    assert_eq!(err.kind(), ServeErrorKind::Tls);
    assert!(err.to_string().contains("missing-key.pem"), "{err}");
}

#[test]
fn oversized_request_heads_get_431_and_are_closed() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Big: ").unwrap();
    // 1 MiB of header value, far past the 16 KiB limit; the server may stop reading
    // (and reset the connection) before all of it is written.
    let chunk = [b'a'; 64 * 1024];
    for _ in 0..16 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Too many headers: the same answer.
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = String::from("GET /metrics HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..100 {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.starts_with(b"HTTP/1.1 431"), "{:?}", String::from_utf8_lossy(&reply));

    // The server still serves.
    assert_eq!(get(server.local_addr(), &[]).status, StatusCode::OK);
}

#[test]
fn a_slow_client_does_not_block_others_and_is_cut_off() {
    let (dir, _registry) = metrics_dir();
    let timeout = Duration::from_secs(3);
    let server = start(&dir, local().header_read_timeout(timeout));
    let addr = server.local_addr();

    // Slowloris: half a request head, then silence.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: loc").unwrap();
    let stalled_at = Instant::now();

    for _ in 0..5 {
        assert_eq!(get(addr, &[]).status, StatusCode::OK);
    }
    // Served while the slow client still held its connection (checked below: it was
    // closed only after these were answered).
    let others_done = stalled_at.elapsed();

    // The server closes the slow connection once the header timeout passes.
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut reply = Vec::new();
    let read = slow.read_to_end(&mut reply);
    let closed_after = stalled_at.elapsed();
    assert!(read.is_ok() || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset));
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    assert!(others_done < closed_after, "the others were answered after the slow client was cut off");
    assert!(closed_after >= timeout - Duration::from_millis(100), "closed after {closed_after:?}");
    assert!(closed_after < timeout + Duration::from_secs(5), "closed after {closed_after:?}");
}

#[test]
fn connections_past_the_cap_wait_until_a_slot_frees() {
    let (dir, _registry) = metrics_dir();
    let timeout = Duration::from_secs(1);
    let server = start(&dir, local().max_connections(2).header_read_timeout(timeout));
    let addr = server.local_addr();
    // Two idle connections hold both slots until the header timeout closes them.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(get(addr, &[]).status, StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "served after {waited:?}, before a slot freed");
    assert!(waited < timeout + Duration::from_secs(5), "served after {waited:?}");
    drop(idle);
}

#[test]
fn many_concurrent_scrapers_are_all_served() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let addr = server.local_addr();
    let (clients, per_client) = (32, 25);
    let expected_body = expected(&dir, None, Some("gzip"));
    let started = Instant::now();
    let served = runtime().block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            tasks.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                tokio::spawn(conn);
                let mut bodies = Vec::new();
                for _ in 0..per_client {
                    let req = request(Method::GET, "/metrics", &[("accept-encoding", "gzip")]);
                    let response = sender.send_request(req).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    bodies.push(response.into_body().collect().await.unwrap().to_bytes());
                }
                bodies
            });
        }
        let mut all = Vec::new();
        while let Some(bodies) = tasks.join_next().await {
            all.extend(bodies.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    assert_eq!(served.len(), clients * per_client);
    assert!(served.iter().all(|b| b[..] == expected_body[..]));
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    println!(
        "{} scrapes by {clients} concurrent keep-alive clients in {:.2}s ({:.0}/s)",
        served.len(),
        elapsed.as_secs_f64(),
        served.len() as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn a_busy_address_is_an_error_naming_it_and_shutdown_stops_listening() {
    let (dir, _registry) = metrics_dir();
    let server = start(&dir, local());
    let addr = server.local_addr();
    let err = serve(Collector::new(dir.path()).unwrap(), ServeConfig::new().listen(addr)).unwrap_err();
    assert_eq!(err.kind(), ServeErrorKind::Bind);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    server.shutdown().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "still listening after shutdown");
}

#[test]
fn a_vanished_directory_is_503_not_a_crash() {
    let (dir, _registry) = metrics_dir();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let server = serve(Collector::new(&sub).unwrap(), local()).unwrap();
    std::fs::remove_dir(&sub).unwrap();
    let answer = get(server.local_addr(), &[]);
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!String::from_utf8_lossy(&answer.body).contains(dir.path().to_str().unwrap()));
}

/// A stand-in Pushgateway: records each request and answers with `status`.
struct Recorded {
    method: Method,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: String,
}

fn recording_gateway(status: StatusCode, answer: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Recorded>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let log = Arc::clone(&log2);
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = req.into_parts();
                        let text = |h| parts.headers.get(h).map(|v: &HeaderValue| v.to_str().unwrap().to_owned());
                        let body = body.collect().await.unwrap().to_bytes();
                        log.lock().unwrap().push(Recorded {
                            method: parts.method.clone(),
                            path: parts.uri.path().to_owned(),
                            content_type: text(header::CONTENT_TYPE),
                            authorization: text(header::AUTHORIZATION),
                            body: String::from_utf8(body.to_vec()).unwrap(),
                        });
                        let mut response = hyper::Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                        *response.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
    });
    (addr, log)
}

#[test]
fn push_sends_text_to_the_grouping_key_url_with_put_or_post() {
    let (dir, _registry) = metrics_dir();
    let (addr, log) = recording_gateway(StatusCode::OK, "");
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    let gateway = format!("http://{addr}");

    push(&scrape, &PushConfig::new(&gateway, "nightly").label("instance", "db/7")).unwrap();
    let auth = BasicAuth::new("pusher", "pw").unwrap();
    push(&scrape, &PushConfig::new(&gateway, "nightly").method(PushMethod::Post).basic_auth(auth)).unwrap();

    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, Method::PUT);
    assert_eq!(log[0].path, "/metrics/job/nightly/instance@base64/ZGIvNw==");
    assert_eq!(log[0].content_type.as_deref(), Some(TEXT));
    assert_eq!(log[0].body.as_bytes(), expected(&dir, None, None));
    assert_eq!(log[0].authorization, None);
    assert_eq!(log[1].method, Method::POST);
    assert_eq!(log[1].path, "/metrics/job/nightly");
    assert_eq!(log[1].authorization.as_deref(), Some("Basic cHVzaGVyOnB3"));
}

#[test]
fn a_push_the_gateway_refuses_is_an_error_with_its_status_and_message() {
    let (addr, _log) = recording_gateway(StatusCode::BAD_REQUEST, "pushed metrics are invalid or inconsistent\n");
    let err = push(&Default::default(), &PushConfig::new(format!("http://{addr}"), "j")).unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Rejected);
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.message(), Some("pushed metrics are invalid or inconsistent\n"));
    assert!(err.to_string().contains("HTTP 400"), "{err}");
}
