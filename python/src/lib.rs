//! `prometheus_multiproc._native`: the PyO3 module under the `prometheus_multiproc`
//! Python package.
//!
//! It converts types and nothing else: every rule (reading, merging, exposition,
//! negotiation, serving, cleanup, the command line) is the `prometheus-multiproc`
//! crate's. The GIL is released around everything that touches files, merges or
//! encodes, so other Python threads run during a scrape. The core's `log` records
//! reach Python's `logging` through pyo3-log, under logger names
//! `prometheus_multiproc.*` (a skipped file is a warning of
//! `prometheus_multiproc.collect`).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prometheus_multiproc as core;
use prometheus_multiproc::cli::chain;
use prometheus_multiproc::expose::{self, Escaping, Format};
use prometheus_multiproc::serve::{BasicAuth, ServeConfig, TlsFiles};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

/// A core error as a Python exception: `OSError` (with `errno` and `filename`, so that
/// Python picks the subclass, e.g. `FileNotFoundError`) when an I/O error caused it,
/// `ValueError` otherwise. The message is the core error's.
fn to_py_err(error: core::Error) -> PyErr {
    let message = chain(&error);
    match error.io_error().and_then(std::io::Error::raw_os_error) {
        Some(errno) => {
            let path = error.path().map(|p| p.to_string_lossy().into_owned());
            PyOSError::new_err((errno, message, path))
        }
        None if error.io_error().is_some() => PyOSError::new_err(message),
        None => PyValueError::new_err(message),
    }
}

/// A merged directory, kept between scrapes: the core's `Collector`.
#[pyclass(frozen, module = "prometheus_multiproc._native")]
struct Collector {
    inner: Arc<core::Collector>,
}

/// `prometheus_client.samples.Sample` and `prometheus_client.metrics_core.Metric`,
/// imported once.
static SAMPLE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static METRIC_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

impl Collector {
    fn scrape(&self, py: Python<'_>) -> PyResult<core::Scrape> {
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.collect()).map_err(to_py_err)
    }
}

#[pymethods]
impl Collector {
    /// A collector over the directory `path`; `self_metrics` adds the
    /// `prometheus_multiproc_skipped_files` gauge family to every scrape.
    #[new]
    #[pyo3(signature = (path, self_metrics = false))]
    fn new(py: Python<'_>, path: PathBuf, self_metrics: bool) -> PyResult<Collector> {
        let collector = py.detach(|| core::Collector::new(&path)).map_err(to_py_err)?;
        let collector = if self_metrics { collector.with_self_metrics() } else { collector };
        Ok(Collector { inner: Arc::new(collector) })
    }

    /// The directory this collector reads.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }

    /// Merges the directory into `(families, skipped)`: `prometheus_client` `Metric`
    /// objects holding `Sample`s, and `(path, reason, message)` for each skipped file.
    fn collect<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let scrape = self.scrape(py)?;
        let sample_class = SAMPLE_CLASS.import(py, "prometheus_client.samples", "Sample")?;
        let metric_class = METRIC_CLASS.import(py, "prometheus_client.metrics_core", "Metric")?;
        let tuple_new = py.get_type::<PyTuple>().getattr("__new__")?;
        // Names and label values repeat across samples: one Python string per
        // interned core string (keyed by address and length; the scrape keeps every
        // string alive, so an address is never reused within this call).
        let mut strings: HashMap<(*const u8, usize), Bound<'py, PyString>> = HashMap::new();
        let mut string =
            |s: &Arc<str>| strings.entry((s.as_ptr(), s.len())).or_insert_with(|| PyString::new(py, s)).clone();
        let none = py.None();
        let families = PyList::empty(py);
        for family in &scrape.families {
            let metric = metric_class.call1((string(&family.name), string(&family.help), family.kind.as_str()))?;
            let samples = PyList::empty(py);
            for sample in &family.samples {
                let labels = PyDict::new(py);
                for (name, value) in sample.labels.iter() {
                    labels.set_item(string(name), string(value))?;
                }
                let fields = PyTuple::new(
                    py,
                    [
                        string(&sample.name).into_any(),
                        labels.into_any(),
                        sample.value.into_pyobject(py)?.into_any(),
                        none.bind(py).clone(),
                        none.bind(py).clone(),
                        none.bind(py).clone(),
                    ],
                )?;
                let sample = tuple_new.call1((sample_class, fields))?;
                samples.append(sample)?;
            }
            metric.setattr("samples", samples)?;
            families.append(metric)?;
        }
        let skipped = PyList::empty(py);
        for file in &scrape.skipped {
            skipped.append((file.path.clone(), file.reason.as_str(), file.reason.to_string()))?;
        }
        Ok((families, skipped))
    }

    /// The merged directory as Prometheus text (or OpenMetrics 1.0.0 when
    /// `openmetrics`), exactly as prometheus_client's `generate_latest` writes it.
    #[pyo3(signature = (openmetrics = false))]
    fn expose<'py>(&self, py: Python<'py>, openmetrics: bool) -> PyResult<Bound<'py, PyBytes>> {
        let inner = Arc::clone(&self.inner);
        let format = if openmetrics { Format::OpenMetrics } else { Format::Text };
        let text = py
            .detach(move || {
                inner.collect().map(|scrape| {
                    let mut text = String::new();
                    expose::encode_scrape(&scrape, format, Escaping::Underscores, &mut text);
                    text
                })
            })
            .map_err(to_py_err)?;
        Ok(PyBytes::new(py, text.as_bytes()))
    }

    /// Negotiates with the request's `Accept` and `Accept-Encoding` headers and renders
    /// the merged directory: `(body, content_type, content_encoding or None)`.
    #[pyo3(signature = (accept = None, accept_encoding = None))]
    fn render<'py>(
        &self,
        py: Python<'py>,
        accept: Option<String>,
        accept_encoding: Option<String>,
    ) -> PyResult<(Bound<'py, PyBytes>, &'static str, Option<&'static str>)> {
        let inner = Arc::clone(&self.inner);
        let page = py
            .detach(move || {
                inner.collect().map(|scrape| core::render(&scrape, accept.as_deref(), accept_encoding.as_deref()))
            })
            .map_err(to_py_err)?;
        Ok((PyBytes::new(py, &page.body), page.content_type, page.content_encoding))
    }

    fn __repr__(&self) -> String {
        format!("Collector({:?})", self.inner.dir())
    }
}

/// The core's `/metrics` endpoint, running on its own thread.
#[pyclass(frozen, module = "prometheus_multiproc._native")]
struct Server {
    inner: Mutex<Option<core::serve::Server>>,
    url: String,
    addr: SocketAddr,
    /// The process that started the server. A fork child has a copy of this object
    /// but not the server's threads: it must neither signal nor join them.
    owner_pid: u32,
}

impl Server {
    /// The server, unless this process is a fork child of its owner (then it is
    /// forgotten: its threads are not in this process).
    fn take(&self) -> Option<core::serve::Server> {
        let server = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if std::process::id() == self.owner_pid {
            server
        } else {
            std::mem::forget(server);
            None
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(server) = self.take() {
            drop(server); // shuts down and joins, as Server::shutdown
        }
    }
}

#[pymethods]
impl Server {
    /// `http://ADDR:PORT/metrics` or `https://…`.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// The port bound (the real one when 0 was asked for).
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address bound.
    #[getter]
    fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// Stops the server: no new connections; open ones finish their response (within
    /// 5 s). Calling it again, or in a fork child of the process that started it,
    /// does nothing.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        match self.take() {
            Some(server) => py.detach(|| server.shutdown()).map_err(|e| PyRuntimeError::new_err(e.to_string())),
            None => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        format!("Server({:?})", self.url)
    }
}

/// Serves `collector` at `http(s)://addr:port/metrics` on a thread of its own.
// The arguments are the keyword arguments of the Python function, one for one.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (collector, port, addr, basic_auth = None, certfile = None, keyfile = None, max_connections = 64))]
fn serve(
    py: Python<'_>,
    collector: &Collector,
    port: u16,
    addr: &str,
    basic_auth: Option<(String, String)>,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    max_connections: usize,
) -> PyResult<Server> {
    let listen = (addr, port)
        .to_socket_addrs()
        .map_err(|e| PyValueError::new_err(format!("cannot resolve {addr}:{port}: {e}")))?
        .next()
        .ok_or_else(|| PyValueError::new_err(format!("{addr}:{port} resolves to no address")))?;
    let mut config = ServeConfig::new().listen(listen).max_connections(max_connections);
    if let Some((user, password)) = basic_auth {
        config = config.basic_auth(BasicAuth::new(user, password).map_err(|e| PyValueError::new_err(e.to_string()))?);
    }
    match (certfile, keyfile) {
        (Some(cert), Some(key)) => config = config.tls(TlsFiles::new(cert, key)),
        (None, None) => {}
        _ => return Err(PyValueError::new_err("certfile and keyfile go together")),
    }
    let inner = Arc::clone(&collector.inner);
    let server = py.detach(move || core::serve::serve(inner, config)).map_err(|e| {
        let message = chain(&e);
        match std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|e| e.raw_os_error())
        {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        }
    })?;
    Ok(Server {
        url: server.url(),
        addr: server.local_addr(),
        inner: Mutex::new(Some(server)),
        owner_pid: std::process::id(),
    })
}

/// The write side over one directory: the core's `Registry`, under a worker ID
/// (`None`: `$PROMETHEUS_MULTIPROC_WORKER_ID`, else the pid), as the core's
/// `WorkerId::parse` reads it (`auto`, `auto:PREFIX`, or an ID).
#[pyclass(frozen, module = "prometheus_multiproc._native")]
struct Writer {
    registry: core::Registry,
}

#[pymethods]
impl Writer {
    #[new]
    #[pyo3(signature = (path, worker_id = None))]
    fn new(py: Python<'_>, path: PathBuf, worker_id: Option<String>) -> PyResult<Writer> {
        py.detach(|| {
            let mut builder = core::Registry::builder().dir(&path);
            if let Some(id) = worker_id {
                builder = builder.worker_id(core::WorkerId::parse(&id)?);
            }
            builder.build()
        })
        .map(|registry| Writer { registry })
        .map_err(to_py_err)
    }

    /// The worker ID written under now (`auto:PREFIX` while an automatic slot is not
    /// claimed yet).
    #[getter]
    fn worker_id(&self, py: Python<'_>) -> String {
        py.detach(|| self.registry.worker_id().to_string())
    }

    /// The metrics directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.registry.dir().to_path_buf()
    }

    /// The core's `Registry::after_fork`: moves every value into this process's own
    /// files now (claiming an automatic slot), instead of at the first write.
    fn after_fork(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.registry.after_fork()).map_err(to_py_err)
    }

    fn __repr__(&self) -> String {
        format!("Writer({:?}, worker_id={:?})", self.registry.dir(), self.registry.worker_id().to_string())
    }
}

/// One sample's value in the writer's files: the core's `RawValue`, with the methods
/// of prometheus_client's value classes. Subclassed in Python by each
/// `MultiProcessValue` factory.
#[pyclass(frozen, subclass, module = "prometheus_multiproc._native")]
struct Value {
    raw: core::RawValue,
}

#[pymethods]
impl Value {
    #[new]
    #[pyo3(signature = (writer, typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode = ""))]
    #[allow(clippy::too_many_arguments)] // prometheus_client's value-class signature, plus the writer
    fn new(
        py: Python<'_>,
        writer: &Writer,
        typ: &str,
        metric_name: &str,
        name: &str,
        labelnames: Vec<String>,
        labelvalues: Vec<String>,
        help_text: &str,
        multiprocess_mode: &str,
    ) -> PyResult<Value> {
        let label_names: Vec<&str> = labelnames.iter().map(String::as_str).collect();
        let label_values: Vec<&str> = labelvalues.iter().map(String::as_str).collect();
        let sample = core::PythonSample {
            typ,
            metric_name,
            name,
            label_names: &label_names,
            label_values: &label_values,
            help: help_text,
            multiprocess_mode,
        };
        py.detach(|| writer.registry.raw_value(&sample)).map(|raw| Value { raw }).map_err(to_py_err)
    }

    /// Adds `amount` (an atomic add on the shared mapping). The GIL is released only
    /// when the value must first move into this process's files (see `RawValue::is_current`).
    fn inc(&self, py: Python<'_>, amount: f64) {
        if self.raw.is_current() {
            self.raw.inc(amount);
        } else {
            py.detach(|| self.raw.inc(amount));
        }
    }

    /// Stores `value` and `timestamp` (`None` or 0 stores 0, as Python's value class).
    #[pyo3(signature = (value, timestamp = None))]
    fn set(&self, py: Python<'_>, value: f64, timestamp: Option<f64>) {
        let timestamp = timestamp.unwrap_or(0.0);
        if self.raw.is_current() {
            self.raw.set(value, timestamp);
        } else {
            py.detach(|| self.raw.set(value, timestamp));
        }
    }

    /// This process's value.
    fn get(&self, py: Python<'_>) -> f64 {
        if self.raw.is_current() { self.raw.get() } else { py.detach(|| self.raw.get()) }
    }

    /// Exemplars are not kept in multiprocess mode (as in prometheus_client).
    fn set_exemplar(&self, exemplar: &Bound<'_, PyAny>) {
        let _ = exemplar;
    }

    /// Always `None` (as in prometheus_client's multiprocess mode).
    fn get_exemplar(&self) -> Option<Py<PyAny>> {
        None
    }
}

/// Raises `ValueError` unless `worker_id` is what the core's `WorkerId::parse` accepts
/// (`auto`, `auto:PREFIX`, or a worker ID).
#[pyfunction]
fn check_worker_id(worker_id: &str) -> PyResult<()> {
    core::WorkerId::parse(worker_id).map(drop).map_err(to_py_err)
}

/// Removes the live-mode gauge files of the dead worker `pid` from `path`; returns how
/// many were removed.
#[pyfunction]
fn mark_process_dead(py: Python<'_>, path: PathBuf, pid: String) -> PyResult<usize> {
    py.detach(|| core::cleanup::mark_process_dead(&path, &pid)).map_err(to_py_err)
}

/// Folds dead writers' files into archives; returns what was done as a dict of lists.
#[pyfunction]
fn compact<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let done = py.detach(|| core::cleanup::compact(&path)).map_err(to_py_err)?;
    let out = PyDict::new(py);
    out.set_item("dead_writers", done.dead_writers)?;
    out.set_item("archives", done.archives)?;
    out.set_item("removed", done.removed)?;
    out.set_item("kept", done.kept)?;
    out.set_item("unreadable", done.unreadable)?;
    out.set_item("deferred", done.deferred)?;
    Ok(out)
}

/// Removes a previous run's metrics files from `path`; returns `{"removed": [...],
/// "left": [...]}`.
#[pyfunction]
fn clear<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let cleared = py.detach(|| core::cleanup::clear_directory(&path)).map_err(to_py_err)?;
    let out = PyDict::new(py);
    out.set_item("removed", cleared.removed)?;
    out.set_item("left", cleared.left)?;
    Ok(out)
}

/// Runs the `prometheus-multiproc` command line (`argv[0]` is the program name) and
/// returns its exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| core::cli::main(argv))
}

/// The native half of `prometheus_multiproc`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The core's records, under Python loggers named after their Rust module
    // (`prometheus_multiproc.collect`, …). Loggers are cached, levels are not, so
    // `logging` configured after import is honoured. Other crates' records (rustls,
    // hyper) pass only from warnings up.
    let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?
        .filter(log::LevelFilter::Warn)
        .filter_target("prometheus_multiproc".to_owned(), log::LevelFilter::Debug);
    // Another extension may have installed the process's `log` logger first; then the
    // core's records go there, and scrapes still work.
    let _ = logger.install();
    m.add_class::<Collector>()?;
    m.add_class::<Server>()?;
    m.add_class::<Writer>()?;
    m.add_class::<Value>()?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    m.add_function(wrap_pyfunction!(mark_process_dead, m)?)?;
    m.add_function(wrap_pyfunction!(compact, m)?)?;
    m.add_function(wrap_pyfunction!(clear, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(check_worker_id, m)?)?;
    m.add("DIR_ENV", core::DIR_ENV)?;
    m.add("WORKER_ID_ENV", core::WORKER_ID_ENV)?;
    m.add("DIR_ENV_DEPRECATED", core::DIR_ENV_DEPRECATED)?;
    m.add("SKIPPED_FILES_METRIC", core::collect::SKIPPED_FILES_METRIC)?;
    Ok(())
}
