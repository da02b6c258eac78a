"""Real servers whose workers write through ``prometheus_multiproc.install()``, on
127.0.0.1 only, always killed: gunicorn (pinned) with recycled sync workers and
automatic slots; a SIGKILLed worker with no ``child_exit`` hook; ``uvicorn --workers
2`` with prometheus-fastapi-instrumentator, unmodified; and a directory shared by
stock Python workers, installed workers and a Rust writer. No timing assertions:
every wait is bounded and polls for a state."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector as StockCollector

import prometheus_multiproc
from conftest import WSGI_APP, free_port, http_get, start_uvicorn, stock_exposition, wait_until_serving

# No child_exit hook: liveness comes from the workers' locks.
GUNICORN_CONF = textwrap.dedent(
    """
    import prometheus_multiproc
    assert prometheus_multiproc.install(worker_id="auto")
    preload_app = {preload}
    """
)


def env_for(metrics_dir, **extra):
    env = dict(os.environ)
    env.pop("prometheus_multiproc_dir", None)
    env.pop("PROMETHEUS_MULTIPROC_WORKER_ID", None)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env.update(extra)
    return env


def sample(body: bytes, line_start: str) -> float:
    """The value of the sample line starting with ``line_start + " "``; 0 if absent."""
    match = re.search(rb"^" + re.escape(line_start.encode()) + rb" (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def stock_totals(path):
    """Stock prometheus_client's ``MultiProcessCollector`` over ``path`` (directory
    order, as it reads it): ``{(name, sorted labels): value}``."""
    registry = CollectorRegistry()
    StockCollector(registry, path=str(path))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def start_gunicorn(server_process, tmp_path, metrics_dir, workers, preload, extra_args=()):
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF.format(preload=preload))
    port = free_port()
    server = server_process(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "--workers", str(workers), "--worker-class",
         "sync", "--bind", "127.0.0.1:{}".format(port), "--timeout", "300", *extra_args, "wsgiapp:app"],
        env_for(metrics_dir, SLOW_PID_FILE=str(tmp_path / "slow.pid")),
        str(tmp_path),
    )
    base = "http://127.0.0.1:{}".format(port)
    wait_until_serving(base + "/metrics", server.proc)
    return server, base


def db_slots(metrics_dir):
    """The worker IDs of the directory's ``.db`` files, archives left out."""
    ids = set()
    for name in os.listdir(str(metrics_dir)):
        if name.endswith(".db") and "_0archive-" not in name:
            ids.add(name[: -len(".db")].rsplit("_", 1)[1])
    return ids


def test_gunicorn_recycled_workers_on_auto_slots(metrics_dir, tmp_path, server_process):
    requests = 100
    server, base = start_gunicorn(
        server_process, tmp_path, metrics_dir, 4, False, ["--max-requests", "3", "--max-requests-jitter", "0"]
    )
    pids = set()
    for _ in range(requests):
        status, headers, body = http_get(base + "/", headers={"Connection": "close"})
        assert (status, body) == (200, b"ok\n")
        pids.add(headers["x-worker-pid"])
    assert len(pids) >= 4 + 20, "fewer than 20 recyclings: {} workers served".format(len(pids))
    status, _, body = http_get(base + "/metrics")
    assert status == 200
    assert sample(body, 'app_requests_total{path="/"}') == requests
    assert db_slots(metrics_dir) <= {"worker-0", "worker-1", "worker-2", "worker-3"}, os.listdir(str(metrics_dir))
    server.stop()
    done = prometheus_multiproc.compact(str(metrics_dir))
    assert done["dead_writers"], done
    assert db_slots(metrics_dir) <= {"worker-0", "worker-1", "worker-2", "worker-3"}, os.listdir(str(metrics_dir))
    ours = prometheus_multiproc.generate_latest(str(metrics_dir))
    assert sample(ours, 'app_requests_total{path="/"}') == requests
    assert sample(ours, "app_latency_seconds_count") == requests
    stock = stock_totals(metrics_dir)
    assert stock[("app_requests_total", (("path", "/"),))] == requests
    assert stock[("app_latency_seconds_count", ())] == requests
    assert stock[("app_latency_seconds_sum", ())] == pytest.approx(requests * 0.05)


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: its descriptors are closed)."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigkilled_worker_without_child_exit_hook(metrics_dir, tmp_path, server_process):
    server, base = start_gunicorn(server_process, tmp_path, metrics_dir, 2, True)
    for _ in range(10):
        assert http_get(base + "/", headers={"Connection": "close"})[0] == 200
    slow = threading.Thread(target=lambda: _ignore_errors(http_get, base + "/slow", timeout=150), daemon=True)
    slow.start()
    pid_file = tmp_path / "slow.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the slow request never started"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    body = prometheus_multiproc.generate_latest(str(metrics_dir))
    assert sample(body, "app_in_flight") == 1.0
    before = sample(body, 'app_requests_total{path="/"}')
    assert before == 11.0
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not process_gone(pid):
        assert time.monotonic() < deadline, "the killed worker did not exit"
        time.sleep(0.05)
    body = prometheus_multiproc.generate_latest(str(metrics_dir))
    assert sample(body, "app_in_flight") == 0.0, body.decode()
    assert sample(body, 'app_requests_total{path="/"}') == before
    # The replacement takes the dead worker's slot and continues its counter.
    for i in range(10):
        assert http_get(base + "/", headers={"Connection": "close"})[0] == 200
        now = sample(prometheus_multiproc.generate_latest(str(metrics_dir)), 'app_requests_total{path="/"}')
        assert now == before + i + 1
    assert db_slots(metrics_dir) <= {"worker-0", "worker-1", "worker-2"}, os.listdir(str(metrics_dir))
    # The preloading master declared every metric but never wrote: it holds no slot.
    assert not any(str(server.proc.pid) in n for n in os.listdir(str(metrics_dir)))


def _ignore_errors(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except OSError:
        pass


STARLETTE_APP = textwrap.dedent(
    """
    import prometheus_multiproc
    assert prometheus_multiproc.install()

    from prometheus_fastapi_instrumentator import Instrumentator
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request):
        return PlainTextResponse("ok\\n")

    app = Starlette(routes=[Route("/", home), Mount("/metrics", app=prometheus_multiproc.make_asgi_app())])
    Instrumentator().instrument(app)
    """
)


def test_uvicorn_workers_with_prometheus_fastapi_instrumentator(metrics_dir, tmp_path, server_process):
    server, base = start_uvicorn(server_process, tmp_path, env_for(metrics_dir), STARLETTE_APP)
    wait_until_serving(base + "/metrics/", server.proc)
    requests = 60
    for _ in range(requests):
        status, _, body = http_get(base + "/", headers={"Connection": "close"})
        assert (status, body) == (200, b"ok\n")
    # The instrumentator records a request after its response is sent: poll (bounded)
    # until the last one is in; the total never passes the requests sent.
    deadline = time.monotonic() + 30
    while True:
        status, _, body = http_get(base + "/metrics/")
        assert status == 200
        total = sample(body, 'http_requests_total{handler="/",method="GET",status="2xx"}')
        assert total <= requests, body.decode()
        if total == requests or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert total == requests, body.decode()
    assert sample(body, 'http_request_duration_seconds_count{handler="/",method="GET"}') == requests
    # Written through our writer: every file has a liveness lock beside it.
    names = os.listdir(str(metrics_dir))
    writers = {n[len("writer_"): -len(".lock")] for n in names if n.startswith("writer_")}
    assert writers and db_slots(metrics_dir) <= writers, names
    # Once the server has stopped (nothing changes any more), our exposition equals
    # stock prometheus_client's, byte for byte.
    server.stop()
    assert prometheus_multiproc.generate_latest(str(metrics_dir)) == stock_exposition(metrics_dir)


STOCK_WORKER = textwrap.dedent(
    """
    import sys
    import prometheus_multiproc
    if sys.argv[1] == "installed":
        assert prometheus_multiproc.install(worker_id=sys.argv[2] or None)
    from prometheus_client import Counter, Gauge, Histogram
    requests = Counter("mixed_requests", "Requests.", ["path"])
    requests.labels("/").inc(3)
    requests.labels("/" + sys.argv[1]).inc()
    Gauge("mixed_in_flight", "In flight.", multiprocess_mode="livesum").inc(1)
    Gauge("mixed_temperature", "Temperature.", multiprocess_mode="all").set(20 + len(sys.argv[1]))
    Histogram("mixed_latency_seconds", "Latency.", buckets=[0.1, 1.0]).observe(0.05)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_mixed_directory_equals_stock_python_byte_for_byte(metrics_dir):
    rust_writer = os.environ.get("PMP_RUST_WRITER")
    if not rust_writer:
        pytest.fail("PMP_RUST_WRITER is not set: run the suite through `cargo test --test python_package`, or set "
                    "it to target/debug/deps/python_package-*")
    env = env_for(metrics_dir)
    commands = [
        [sys.executable, "-c", STOCK_WORKER, "stock", ""],
        [sys.executable, "-c", STOCK_WORKER, "stock", ""],
        [sys.executable, "-c", STOCK_WORKER, "installed", ""],
        [sys.executable, "-c", STOCK_WORKER, "installed", "auto:py"],
    ]
    procs = []
    try:
        for cmd in commands:
            procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        procs.append(
            subprocess.Popen([rust_writer], env=dict(env, PMP_PY_ROLE="rust-writer", PROMETHEUS_MULTIPROC_WORKER_ID="rust-1"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
        for proc in procs:
            assert proc.stdout.readline().startswith("ready")
        assert all(proc.poll() is None for proc in procs)
        ours = prometheus_multiproc.generate_latest(str(metrics_dir))
        assert ours == stock_exposition(metrics_dir)
        assert prometheus_multiproc.generate_latest(str(metrics_dir), openmetrics=True) == stock_exposition(
            metrics_dir, openmetrics=True
        )
        assert sample(ours, 'mixed_requests_total{path="/"}') == 4 * 3 + 4
        assert sample(ours, "mixed_in_flight") == 4 + 2
        names = os.listdir(str(metrics_dir))
        assert "counter_py-0.db" in names and "counter_rust-1.db" in names, names
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
