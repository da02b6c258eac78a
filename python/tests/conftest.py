"""Shared fixtures: metrics directories, the crate's differential scenarios, stock
prometheus_client's exposition of a directory, and real servers on loopback."""

import glob
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector as StockCollector
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om

REPO = Path(__file__).resolve().parents[2]
SCENARIO_WRITER = REPO / "tests" / "support" / "py_write_scenarios.py"


# A WSGI app counting requests with stock prometheus_client metrics and serving
# /metrics through this package. Each response names its worker (`X-Worker-Pid`);
# `/slow` writes the worker's pid to `$SLOW_PID_FILE` and then blocks, in flight.
WSGI_APP = textwrap.dedent(
    """
    import os, time
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_multiproc import make_wsgi_app

    REQUESTS = Counter("app_requests", "Requests served.", ["path"])
    LATENCY = Histogram("app_latency_seconds", "Latency.", buckets=[0.1, 1.0])
    IN_FLIGHT = Gauge("app_in_flight", "Requests in flight.", multiprocess_mode="livesum")
    metrics = make_wsgi_app()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            return metrics(environ, start_response)
        with IN_FLIGHT.track_inprogress():
            REQUESTS.labels("/").inc()
            LATENCY.observe(0.05)
            if environ["PATH_INFO"] == "/slow":
                with open(os.environ["SLOW_PID_FILE"], "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(120)
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Worker-Pid", str(os.getpid()))])
        return [b"ok\\n"]
    """
)


def stock_registry(path) -> CollectorRegistry:
    """A registry on which stock prometheus_client 0.26 merges ``path``'s files in
    sorted order (the order our collector merges in; stock merges in directory order)."""
    files = sorted(glob.glob(os.path.join(str(path), "*.db")))

    class Sorted:
        def collect(self):
            return StockCollector.merge(files, accumulate=True)

    registry = CollectorRegistry()
    registry.register(Sorted())
    return registry


def stock_exposition(path, openmetrics=False) -> bytes:
    """prometheus_client 0.26's exposition of ``path``, merged in sorted order."""
    registry = stock_registry(path)
    return generate_latest_om(registry) if openmetrics else generate_latest(registry)


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory):
    """The crate's Python-written differential scenarios (every type and gauge mode,
    hostile labels and help, special floats, raw quirks), one directory each, written
    once by tests/support/py_write_scenarios.py in a child interpreter."""
    root = tmp_path_factory.mktemp("scenarios")
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    subprocess.run([sys.executable, str(SCENARIO_WRITER), str(root)], check=True, env=env, timeout=120)
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(dirs) >= 10, dirs
    return dirs


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    """An empty metrics directory; the environment variables unset."""
    d = tmp_path / "metrics"
    d.mkdir()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    return d


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None, method="GET", timeout=10.0):
    """``(status, headers, body)`` of one request, header names lower-cased; HTTP
    errors are returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_until_serving(url, proc, deadline_s=60.0):
    """Polls ``url`` until it answers (bounded); fails if ``proc`` exits first."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail("server exited with {} before serving:\n{}".format(proc.returncode, out))
        try:
            return http_get(url, timeout=2.0)
        except OSError as e:
            last = e
            time.sleep(0.1)
    pytest.fail("server did not answer {} within {} s: {}".format(url, deadline_s, last))


class ServerProcess:
    """A server in its own process group, always killed (the whole group)."""

    def __init__(self, args, env, cwd):
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)
        return self.proc.stdout.read().decode(errors="replace")


@pytest.fixture
def server_process():
    """Starts servers with ``start(args, env, cwd)``; kills them after the test."""
    started = []

    def start(args, env, cwd):
        server = ServerProcess(args, env, cwd)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def start_uvicorn(start, tmp_path, env, source):
    """Writes ``source`` as ``asgiapp.py`` in ``tmp_path`` and starts ``uvicorn
    --workers 2`` on its ``app``, on 127.0.0.1, with ``start`` (the
    ``server_process`` fixture); returns ``(server, base URL)``."""
    (tmp_path / "asgiapp.py").write_text(source)
    port = free_port()
    server = start(
        [sys.executable, "-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "asgiapp:app"],
        env,
        str(tmp_path),
    )
    return server, "http://127.0.0.1:{}".format(port)
