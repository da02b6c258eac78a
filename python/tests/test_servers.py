"""Real servers from PyPI (pinned in requirements.txt), on 127.0.0.1 only: gunicorn
with 4 sync (and 4 gthread) workers recycled by ``max_requests``, and ``uvicorn --workers 2``, each
counting requests with stock prometheus_client metrics and serving ``/metrics``
through this package. After N requests the counter is exactly N, and the body equals
stock prometheus_client's exposition of the same directory."""

import os
import re
import struct
import sys
import textwrap
import time

import pytest

from conftest import WSGI_APP, free_port, http_get, start_uvicorn, stock_exposition, wait_until_serving

REQUESTS = 60

GUNICORN_CONF = textwrap.dedent(
    """
    from prometheus_multiproc import mark_process_dead

    def child_exit(server, worker):
        mark_process_dead(worker.pid)
    """
)

ASGI_APP = textwrap.dedent(
    """
    from prometheus_client import Counter
    from prometheus_multiproc import make_asgi_app

    REQUESTS = Counter("app_requests", "Requests served.", ["path"])
    metrics = make_asgi_app()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            return await metrics(scope, receive, send)
        REQUESTS.labels("/").inc()
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok\\n"})
    """
)


def counter_value(body: bytes) -> float:
    match = re.search(rb'^app_requests_total\{path="/"\} (\S+)$', body, re.M)
    assert match, body.decode()
    return float(match.group(1))


def env_for(metrics_dir):
    env = dict(os.environ)
    env.pop("prometheus_multiproc_dir", None)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env


def settle(metrics_dir, timeout_s=30.0):
    """Waits until no worker is creating its files: the directory lists the same files
    with the same sizes twice, 0.2 s apart, and none is empty (a worker recycled by
    ``max_requests`` creates its files empty, then writes their header)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = []
        for name in sorted(os.listdir(str(metrics_dir))):
            if name.endswith(".db"):
                try:
                    now.append((name, os.path.getsize(os.path.join(str(metrics_dir), name))))
                except FileNotFoundError:
                    now = None
                    break
        if now is not None and now == last and all(size > 0 for _, size in now):
            return
        last = now
        time.sleep(0.2)
    raise AssertionError("the metrics directory kept changing for {} s".format(timeout_s))


def same_as_stock(url, metrics_dir, headers=None, openmetrics=False, attempts=10):
    """Scrapes ``url`` with the directory settled and compares the body with stock
    Python's exposition of the same files; again (a few times at most) if a worker
    started in between: the scrape itself counts towards ``max_requests``, so the
    worker that served it may be replaced while stock Python reads the directory, and
    stock Python fails on a file still being created."""
    for attempt in range(attempts):
        settle(metrics_dir)
        status, response_headers, body = http_get(url, headers=headers)
        assert status == 200
        try:
            stock = stock_exposition(metrics_dir, openmetrics=openmetrics)
        except struct.error:
            if attempt == attempts - 1:
                raise
            continue
        if body == stock or attempt == attempts - 1:
            assert body == stock
            return response_headers, body


def drive(base, metrics_dir, proc):
    """Sends REQUESTS requests, then checks /metrics against stock Python."""
    wait_until_serving(base + "/metrics", proc)
    for _ in range(REQUESTS):
        status, _, body = http_get(base + "/", headers={"Connection": "close"})
        assert (status, body) == (200, b"ok\n")
    status, _, body = http_get(base + "/metrics")
    assert status == 200
    assert counter_value(body) == float(REQUESTS)
    _, body = same_as_stock(base + "/metrics", metrics_dir)
    assert counter_value(body) == float(REQUESTS)
    headers, _ = same_as_stock(
        base + "/metrics", metrics_dir, headers={"Accept": "application/openmetrics-text"}, openmetrics=True
    )
    assert headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_workers_with_max_requests(metrics_dir, tmp_path, server_process, worker_class):
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    port = free_port()
    threads = ["--threads", "4"] if worker_class == "gthread" else []
    server = server_process(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "--workers", "4", "--worker-class", worker_class,
         *threads, "--max-requests", "7", "--max-requests-jitter", "0", "--bind", "127.0.0.1:{}".format(port),
         "wsgiapp:app"],
        env_for(metrics_dir),
        str(tmp_path),
    )
    drive("http://127.0.0.1:{}".format(port), metrics_dir, server.proc)
    # Workers were recycled: more writers than workers have left files.
    assert len([n for n in os.listdir(str(metrics_dir)) if n.startswith("counter_")]) > 4


def test_uvicorn_two_workers(metrics_dir, tmp_path, server_process):
    server, base = start_uvicorn(server_process, tmp_path, env_for(metrics_dir), ASGI_APP)
    drive(base, metrics_dir, server.proc)
