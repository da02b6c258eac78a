//! The `/metrics` HTTP endpoint (feature `http`, on by default): one [`Collector`]
//! behind [hyper](https://hyper.rs), with content negotiation, gzip, optional basic
//! authentication and TLS, and limits that keep hostile clients from tying it up.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::serve::{ServeConfig, serve};
//! use prometheus_multiproc::{Collector, Opts, Registry};
//!
//! # let registry = Registry::builder().dir(dir.path()).build()?;
//! # registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc();
//! let collector = Collector::new(dir.path())?;
//! // Port 0 picks a free port; the default is 127.0.0.1:9464.
//! let server = serve(collector, ServeConfig::new().listen("127.0.0.1:0".parse()?))?;
//! println!("scrape {}", server.url()); // http://127.0.0.1:PORT/metrics
//! server.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it answers
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | 200, the merged directory in the format [`render`] negotiates from `Accept` (Prometheus text by default, OpenMetrics when asked), gzipped when `Accept-Encoding` allows |
//! | `HEAD /metrics` | the same headers, no body |
//! | another method on `/metrics` | 405 with `Allow: GET, HEAD` |
//! | any other path | 404 |
//! | no or wrong credentials, when [basic auth](ServeConfig::basic_auth) is on | 401 with `WWW-Authenticate: Basic realm="metrics"`, before anything else: an unauthenticated client learns nothing, not even which paths exist |
//! | the directory cannot be listed | 503 (the error is logged, not sent) |
//!
//! Nothing but the metrics is served: no index page, no debug or admin routes.
//!
//! # Where it listens, and protecting it
//!
//! The default address is **`127.0.0.1:9464`** ([`DEFAULT_LISTEN`]): loopback only, so
//! nothing is exposed until you choose to. To let a Prometheus on another machine
//! scrape it:
//!
//! * listen on a specific interface address rather than `0.0.0.0` where you can, and
//!   restrict the port with a firewall or network policy to the Prometheus servers;
//! * turn on TLS ([`ServeConfig::tls`], feature `tls`) and basic authentication
//!   ([`ServeConfig::basic_auth`]); without TLS the password crosses the network in
//!   clear text on every scrape. In Prometheus: `scheme: https`, `basic_auth`, and
//!   `tls_config.ca_file` for a private CA;
//! * metric names, label values and help texts are all it reveals: keep secrets out of
//!   labels.
//!
//! # Limits
//!
//! Each has a default and a [`ServeConfig`] setter.
//!
//! * **Slow clients.** A client must send a whole request head within
//!   [`header_read_timeout`](ServeConfig::header_read_timeout) (10 s), and finish a TLS
//!   handshake within the same time; an idle keep-alive connection is closed after it
//!   too. A connection lives at most [`max_connection_age`](ServeConfig::max_connection_age)
//!   (60 s), after which it finishes its current response (for at most the
//!   [shutdown grace](ServeConfig::shutdown_grace), 5 s) and closes, so a client that
//!   never reads its response cannot hold a connection for ever.
//! * **Large requests.** A request head (request line and headers) larger than
//!   [`max_header_bytes`](ServeConfig::max_header_bytes) (16 KiB) or with more than 64
//!   headers gets 431 and the connection is closed. Request bodies are never read.
//! * **Many clients.** At most [`max_connections`](ServeConfig::max_connections) (64)
//!   connections are served at once; more wait in the kernel's accept queue until one
//!   closes. Scrapes run on at most two blocking threads and are serialised by the
//!   collector, so memory stays bounded by a few copies of one exposition.
//!
//! # Threads
//!
//! [`serve`] binds the address on the calling thread (so a busy port is reported at
//! once, naming the address), then serves on a thread of its own, `pmp-http`, running
//! a current-thread tokio runtime, plus up to two blocking threads for scrapes. In a
//! pre-fork server, start it **after** forking (in the master only once it forks no
//! more, or in a dedicated exporter child); see `examples/prefork_server.rs`.

mod auth;
#[cfg(feature = "tls")]
mod tls;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use auth::BasicAuth;
#[cfg(feature = "tls")]
pub use tls::TlsFiles;

use crate::collect::Collector;
use crate::expose::render;

/// The default listen address: loopback, port 9464.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// hyper refuses a read buffer smaller than this, so it is the floor of
/// [`ServeConfig::max_header_bytes`].
const MIN_HEADER_BYTES: usize = 8192;

/// At most this many request headers.
const MAX_HEADERS: usize = 64;

/// Threads that run scrapes (the collector serialises them anyway).
const SCRAPE_THREADS: usize = 2;

/// How to serve: address, credentials, TLS and limits. Every setting has a default;
/// see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    listen: SocketAddr,
    basic_auth: Option<BasicAuth>,
    #[cfg(feature = "tls")]
    tls: Option<TlsFiles>,
    max_connections: usize,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_connection_age: Duration,
    shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN,
            basic_auth: None,
            #[cfg(feature = "tls")]
            tls: None,
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connection_age: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServeConfig {
    /// The defaults: `127.0.0.1:9464`, plain HTTP, no authentication.
    pub fn new() -> ServeConfig {
        ServeConfig::default()
    }

    /// The address to listen on (port 0 picks a free port; see
    /// [`Server::local_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Requires HTTP basic authentication with these credentials on every request.
    pub fn basic_auth(mut self, auth: BasicAuth) -> Self {
        self.basic_auth = Some(auth);
        self
    }

    /// Serves HTTPS with the certificate chain and key of `files`, read when the
    /// server starts.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// At most `n` connections at once (at least 1; default 64).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Time allowed to send a whole request head or finish a TLS handshake, and to
    /// stay idle between requests (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Largest request head accepted, in bytes (default 16 KiB; at least 8 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(MIN_HEADER_BYTES);
        self
    }

    /// Longest a connection is kept (default 60 s).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = age;
        self
    }

    /// How long connections may take to finish their response when the server shuts
    /// down or a connection reaches its maximum age (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The configured listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// What went wrong starting or running the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServeErrorKind {
    /// The address could not be bound (in use, not local, not permitted).
    Bind,
    /// The TLS certificate or key could not be read or used.
    Tls,
    /// A setting is unusable (credentials, password file).
    Config,
    /// The runtime or the server thread could not be started, or the thread failed.
    Runtime,
}

impl ServeErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ServeErrorKind::Bind => "cannot listen on",
            ServeErrorKind::Tls => "cannot set up TLS with",
            ServeErrorKind::Config => "invalid",
            ServeErrorKind::Runtime => "cannot run",
        }
    }
}

/// An error starting or stopping the endpoint: a kind, the address, file or setting at
/// fault, and the underlying error if any.
#[derive(Debug)]
pub struct ServeError {
    kind: ServeErrorKind,
    subject: String,
    expected: Option<&'static str>,
    source: Option<io::Error>,
}

impl ServeError {
    fn new(kind: ServeErrorKind, subject: impl Into<String>) -> ServeError {
        ServeError { kind, subject: subject.into(), expected: None, source: None }
    }

    fn expected(mut self, expected: &'static str) -> ServeError {
        self.expected = Some(expected);
        self
    }

    fn caused_by(mut self, source: io::Error) -> ServeError {
        self.source = Some(source);
        self
    }

    fn with_subject(mut self, subject: String) -> ServeError {
        self.subject = subject;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ServeErrorKind {
        self.kind
    }

    /// The address, file or setting at fault (`"127.0.0.1:9464"`, a certificate path).
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.describe(), self.subject)?;
        if let Some(expected) = self.expected {
            write!(f, ": expected {expected}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// A running endpoint. Dropping it shuts it down as [`Server::shutdown`] does.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL to scrape: `http://ADDR/metrics` or `https://ADDR/metrics`.
    pub fn url(&self) -> String {
        format!("{}://{}{METRICS_PATH}", if self.tls { "https" } else { "http" }, self.local_addr)
    }

    /// Stops accepting connections, lets open ones finish their current response
    /// (within the [shutdown grace](ServeConfig::shutdown_grace)), closes them and
    /// joins the server thread.
    ///
    /// # Errors
    /// [`ServeErrorKind::Runtime`] when the server thread panicked.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    /// Blocks the calling thread until the process receives SIGINT or SIGTERM, then
    /// shuts down as [`Server::shutdown`] does. For command-line tools; it installs
    /// handlers for both signals for the rest of the process's life.
    ///
    /// # Errors
    /// [`ServeErrorKind::Runtime`] when the signal handlers cannot be installed or the
    /// server thread panicked.
    pub fn run_until_signal(mut self) -> Result<(), ServeError> {
        let runtime_error = |e: io::Error| {
            ServeError::new(ServeErrorKind::Runtime, "the signal handler")
                .expected("SIGINT/SIGTERM handlers")
                .caused_by(e)
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(runtime_error)?;
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM: shutting down the metrics endpoint"),
                _ = int.recv() => log::info!("SIGINT: shutting down the metrics endpoint"),
            }
            Ok(())
        })
        .map_err(runtime_error)?;
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        self.stop.send_replace(true);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| {
                ServeError::new(ServeErrorKind::Runtime, "the metrics server thread").expected("no panic")
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Binds `config`'s address and serves `collector` on a thread of its own until the
/// returned [`Server`] is shut down or dropped.
///
/// Pass a `Collector` or an `Arc<Collector>` shared with other code: every request
/// uses this one collector, which keeps its state between scrapes.
///
/// # Errors
/// [`ServeErrorKind::Bind`] naming the address; [`ServeErrorKind::Tls`] naming the
/// certificate or key file; [`ServeErrorKind::Runtime`] when no thread or runtime can
/// be started.
pub fn serve(collector: impl Into<Arc<Collector>>, config: ServeConfig) -> Result<Server, ServeError> {
    let listener = StdTcpListener::bind(config.listen)
        .map_err(|e| ServeError::new(ServeErrorKind::Bind, config.listen.to_string()).caused_by(e))?;
    serve_listener(collector, listener, config)
}

/// As [`serve`], on a listener bound beforehand (inherited from a supervisor, socket
/// activation, or bound before dropping privileges). `config`'s listen address is not
/// used.
///
/// # Errors
/// As [`serve`]; [`ServeErrorKind::Bind`] when the listener cannot be put in
/// non-blocking mode.
pub fn serve_listener(
    collector: impl Into<Arc<Collector>>,
    listener: StdTcpListener,
    config: ServeConfig,
) -> Result<Server, ServeError> {
    let local_addr = listener.local_addr().unwrap_or(config.listen);
    let bind_error = |e| ServeError::new(ServeErrorKind::Bind, local_addr.to_string()).caused_by(e);
    listener.set_nonblocking(true).map_err(bind_error)?;
    #[cfg(feature = "tls")]
    let acceptor = config.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
    #[cfg(not(feature = "tls"))]
    let acceptor: Option<NoTls> = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(SCRAPE_THREADS)
        .thread_name("pmp-http-scrape")
        .build()
        .map_err(|e| ServeError::new(ServeErrorKind::Runtime, "the tokio runtime").caused_by(e))?;
    let shared = Arc::new(Shared { collector: collector.into(), auth: config.basic_auth.clone() });
    let (stop, stopped) = watch::channel(false);
    let tls = config.is_tls();
    let limits = Limits::from(&config);
    let thread = std::thread::Builder::new()
        .name("pmp-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, acceptor, shared, limits, stopped).await,
                    Err(e) => log::error!("metrics endpoint on {local_addr}: {e}"),
                }
            });
            // Blocking scrape threads still running are not waited for.
            runtime.shutdown_timeout(limits.grace);
        })
        .map_err(|e| ServeError::new(ServeErrorKind::Runtime, "the metrics server thread").caused_by(e))?;
    Ok(Server { local_addr, tls, stop, thread: Some(thread) })
}

/// Stands in for the TLS acceptor when the `tls` feature is off.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum NoTls {}

#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Acceptor = NoTls;

struct Shared {
    collector: Arc<Collector>,
    auth: Option<BasicAuth>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    header_bytes: usize,
    age: Duration,
    grace: Duration,
}

impl From<&ServeConfig> for Limits {
    fn from(c: &ServeConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            header_timeout: c.header_read_timeout,
            header_bytes: c.max_header_bytes,
            age: c.max_connection_age,
            grace: c.shutdown_grace,
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Option<Acceptor>,
    shared: Arc<Shared>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // Take a connection slot first: past the cap, clients wait in the backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE, ECONNABORTED…: back off briefly rather than spin.
                    log::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, shared, stop) = (acceptor.clone(), Arc::clone(&shared), stop.clone());
        connections.spawn(async move {
            connection(stream, acceptor, shared, limits, stop).await;
            log::trace!("metrics endpoint: closed connection from {peer}");
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Connections see the stop signal and finish within the grace period.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.grace + Duration::from_secs(1), drain).await.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    acceptor: Option<Acceptor>,
    shared: Arc<Shared>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        return http1(stream, shared, limits, stop).await;
    };
    #[cfg(feature = "tls")]
    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => http1(tls, shared, limits, stop).await,
        Ok(Err(e)) => log::debug!("metrics endpoint: TLS handshake failed: {e}"),
        Err(_) => log::debug!("metrics endpoint: TLS handshake timed out"),
    }
    #[cfg(not(feature = "tls"))]
    match acceptor {}
}

async fn http1<I>(io: I, shared: Arc<Shared>, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.header_bytes)
        .max_header_size(limits.header_bytes)
        .max_headers(MAX_HEADERS);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(&shared, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                log::debug!("metrics endpoint: connection ended: {e}");
            }
            return;
        }
        _ = tokio::time::sleep(limits.age) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
    // Finish the response in progress, if any, then close.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.grace, conn).await;
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn respond(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(auth) = &shared.auth
        && !auth.check(req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
    {
        let mut response = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"metrics\", charset=\"UTF-8\""));
        return response;
    }
    if req.uri().path() != METRICS_PATH {
        return plain(StatusCode::NOT_FOUND, "Not Found: metrics are at /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let text = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (accept, accept_encoding) = (text(header::ACCEPT), text(header::ACCEPT_ENCODING));
    let collector = Arc::clone(&shared.collector);
    let scraped = tokio::task::spawn_blocking(move || {
        collector.collect().map(|scrape| render(&scrape, accept.as_deref(), accept_encoding.as_deref()))
    })
    .await;
    match scraped {
        Ok(Ok(page)) => {
            let mut response = Response::new(Full::new(Bytes::from(page.body)));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(page.content_type));
            if let Some(encoding) = page.content_encoding {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            }
            headers.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
            response
        }
        Ok(Err(e)) => {
            log::error!("metrics endpoint: scrape failed: {e}");
            plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: the metrics directory cannot be read\n")
        }
        Err(e) => {
            log::error!("metrics endpoint: scrape panicked: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        }
    }
}
