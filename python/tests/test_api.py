"""The drop-ins' constructor semantics, environment variables and errors; the WSGI and
ASGI apps in process; start_http_server with basic auth and TLS; compact and clear;
``python -m prometheus_multiproc``."""

import asyncio
import base64
import gzip
import os
import ssl
import subprocess
import sys
import warnings

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

import prometheus_multiproc
from prometheus_multiproc import MultiProcessCollector, mark_process_dead

from conftest import http_get, stock_exposition

UNSET = "env PROMETHEUS_MULTIPROC_DIR is not set or not a directory"


def write_counter(d, pid="1", value=3.0, name="jobs"):
    db = MmapedDict(str(d / "counter_{}.db".format(pid)))
    db.write_value(mmap_key(name, name + "_total", [], [], "Jobs."), value, 0.0)
    db.close()


def test_unset_directory_raises_pythons_value_error(metrics_dir):
    with pytest.raises(ValueError, match="^" + UNSET + "$"):
        MultiProcessCollector(CollectorRegistry())
    with pytest.raises(ValueError, match="^" + UNSET + "$"):
        MultiProcessCollector(CollectorRegistry(), path=str(metrics_dir / "missing"))
    with pytest.raises(ValueError, match="^" + UNSET + "$"):
        prometheus_multiproc.generate_latest()
    with pytest.raises(ValueError, match="^" + UNSET + "$"):
        prometheus_multiproc.make_wsgi_app()


def test_environment_variable_and_registration(metrics_dir, monkeypatch):
    write_counter(metrics_dir)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    registry = CollectorRegistry()
    collector = MultiProcessCollector(registry)
    assert generate_latest(registry) == stock_exposition(metrics_dir)
    registry.unregister(collector)  # it was registered
    assert generate_latest(registry) == b""
    assert MultiProcessCollector(None)._path == str(metrics_dir)
    assert prometheus_multiproc.generate_latest() == stock_exposition(metrics_dir)


def test_deprecated_lower_case_variable_warns_as_python(metrics_dir, monkeypatch):
    write_counter(metrics_dir)
    monkeypatch.setenv("prometheus_multiproc_dir", str(metrics_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultiProcessCollector(None)
    assert [type(w.message) for w in caught] == [DeprecationWarning]
    assert str(caught[0].message) == (
        "prometheus_multiproc_dir variable has been deprecated in favor of the upper case naming "
        "PROMETHEUS_MULTIPROC_DIR"
    )
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(metrics_dir)


def test_a_collector_per_request_shares_one_warm_rust_collector(metrics_dir):
    # prometheus_client's docs build a registry and a collector in every request
    # handler; each one must see the directory as it is now, from one kept collector.
    write_counter(metrics_dir, pid="1", value=3.0)

    def per_request():
        registry = CollectorRegistry()
        collector = MultiProcessCollector(registry, path=metrics_dir)
        return collector, generate_latest(registry)

    first, body = per_request()
    first_registry = CollectorRegistry()
    first_registry.register(first)
    parent_native = first._native
    assert body == stock_exposition(metrics_dir)
    write_counter(metrics_dir, pid="2", value=4.0)
    second, body = per_request()
    assert second._native is first._native
    assert body == stock_exposition(metrics_dir)
    assert b"jobs_total 7.0" in body
    # With self-metrics, another collector (its output differs).
    other = MultiProcessCollector(None, path=metrics_dir, self_metrics=True)
    assert other._native is not first._native
    # A collector made before a fork uses the child's own shared collector there.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit
        ok = b"jobs_total 7.0" in generate_latest(first_registry) and first._native is not parent_native
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)


def test_the_auto_describing_registry_registers_names(metrics_dir):
    write_counter(metrics_dir)
    registry = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(registry, path=metrics_dir)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MultiProcessCollector(registry, path=metrics_dir)


def test_mark_process_dead_removes_live_gauges_only(metrics_dir, monkeypatch):
    write_counter(metrics_dir, pid="42")
    for mode in ("livesum", "liveall", "livemax", "sum", "all"):
        db = MmapedDict(str(metrics_dir / "gauge_{}_42.db".format(mode)))
        db.write_value(mmap_key("g_" + mode, "g_" + mode, [], [], "G."), 1.0, 0.0)
        db.close()
    mark_process_dead(42, path=str(metrics_dir))
    assert sorted(os.listdir(str(metrics_dir))) == ["counter_42.db", "gauge_all_42.db", "gauge_sum_42.db"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    mark_process_dead(42)  # nothing left to remove: no error
    mark_process_dead(7, path=str(metrics_dir / "missing"))  # as Python: nothing to remove
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    with pytest.raises(TypeError):
        mark_process_dead(42)


def test_compact_and_clear(metrics_dir):
    write_counter(metrics_dir)
    done = prometheus_multiproc.compact(metrics_dir)
    assert set(done) == {"dead_writers", "archives", "removed", "kept", "unreadable", "deferred"}
    assert done["dead_writers"] == []  # prometheus_client's writers are never folded
    cleared = prometheus_multiproc.clear(metrics_dir)
    assert "counter_1.db" in cleared["removed"] and cleared["left"] == []
    assert [n for n in os.listdir(str(metrics_dir)) if n.endswith(".db")] == []
    with pytest.raises(ValueError, match=UNSET):
        prometheus_multiproc.compact()


def wsgi_call(app, method="GET", path="/metrics", headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
    for k, v in (headers or {}).items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    answer = {}

    def start_response(status, response_headers):
        answer["status"], answer["headers"] = status, response_headers

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_wsgi_app_negotiates_gzips_and_answers_head(metrics_dir):
    write_counter(metrics_dir)
    app = prometheus_multiproc.make_wsgi_app(metrics_dir)
    status, headers, body = wsgi_call(app)
    assert (status, headers, body) == (
        "200 OK",
        [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
        stock_exposition(metrics_dir),
    )
    status, headers, body = wsgi_call(app, headers={"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"})
    assert dict(headers)["Content-Encoding"] == "gzip"
    assert dict(headers)["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert gzip.decompress(body) == stock_exposition(metrics_dir, openmetrics=True)
    status, headers, body = wsgi_call(app, method="HEAD")
    assert (status, body) == ("200 OK", b"")
    assert dict(headers)["Content-Length"] == str(len(stock_exposition(metrics_dir)))
    assert wsgi_call(app, method="POST")[0] == "405 Method Not Allowed"
    assert wsgi_call(app, method="OPTIONS")[:2] == ("200 OK", [("Allow", "OPTIONS,GET,HEAD")])
    assert wsgi_call(app, path="/favicon.ico") == ("200 OK", [], b"")
    no_gzip = prometheus_multiproc.make_wsgi_app(metrics_dir, disable_compression=True)
    assert "Content-Encoding" not in dict(wsgi_call(no_gzip, headers={"Accept-Encoding": "gzip"})[1])


def asgi_call(app, method="GET", headers=()):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/metrics", "headers": list(headers), "query_string": b""}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_asgi_app_negotiates_gzips_and_answers_head(metrics_dir):
    write_counter(metrics_dir)
    app = prometheus_multiproc.make_asgi_app(metrics_dir)
    assert asgi_call(app) == (
        200,
        {b"Content-Type": b"text/plain; version=0.0.4; charset=utf-8"},
        stock_exposition(metrics_dir),
    )
    status, headers, body = asgi_call(
        app, headers=[(b"accept", b"application/openmetrics-text"), (b"accept-encoding", b"gzip")]
    )
    assert headers[b"Content-Encoding"] == b"gzip"
    assert gzip.decompress(body) == stock_exposition(metrics_dir, openmetrics=True)
    assert asgi_call(app, method="HEAD")[2] == b""
    assert asgi_call(app, method="DELETE")[0] == 405


def test_start_http_server_serves_metrics_with_basic_auth(metrics_dir):
    write_counter(metrics_dir)
    server = prometheus_multiproc.start_http_server(0, addr="127.0.0.1", path=metrics_dir, basic_auth=("u", "p"))
    try:
        assert server.url == "http://127.0.0.1:{}/metrics".format(server.port)
        assert http_get(server.url)[0] == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        status, headers, body = http_get(server.url, headers=auth)
        assert (status, body) == (200, stock_exposition(metrics_dir))
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        status, headers, body = http_get(server.url, headers=dict(auth, Accept="application/openmetrics-text"))
        assert body == stock_exposition(metrics_dir, openmetrics=True)
    finally:
        server.shutdown()
    with pytest.raises(OSError):
        http_get(server.url, timeout=2)


def test_start_http_server_serves_tls(metrics_dir, tmp_path):
    write_counter(metrics_dir)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    server = prometheus_multiproc.start_http_server(
        0, addr="127.0.0.1", path=metrics_dir, certfile=str(cert), keyfile=str(key)
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        import urllib.request

        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(server.url, context=context, timeout=10) as response:
            assert response.read() == stock_exposition(metrics_dir)
    finally:
        server.shutdown()
    with pytest.raises(ValueError):
        prometheus_multiproc.start_http_server(0, addr="127.0.0.1", path=metrics_dir, certfile=str(cert))


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "prometheus_multiproc", *args], capture_output=True, timeout=60, env=env
    )


def test_cli_scrape_inspect_and_exit_codes(metrics_dir):
    write_counter(metrics_dir)
    expected, expected_om = stock_exposition(metrics_dir), stock_exposition(metrics_dir, openmetrics=True)
    (metrics_dir / "counter_9.db").write_bytes(b"")
    out = run_cli("scrape", "--dir", str(metrics_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected
    assert b"counter_9.db" in out.stderr  # the skipped file, as a warning
    out = run_cli("scrape", "--dir", str(metrics_dir), "--format", "openmetrics")
    assert out.stdout == expected_om
    out = run_cli("inspect", "--dir", str(metrics_dir), "--json")
    assert out.returncode == 0 and b"counter_1.db" in out.stdout
    assert run_cli("scrape", "--dir", str(metrics_dir / "missing")).returncode == 1
    assert run_cli("no-such-command").returncode == 2
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    assert run_cli("scrape", env=env).returncode == 2
    help_ = run_cli("--help")
    assert help_.returncode == 0 and b"mark-dead" in help_.stdout
    for command in ("scrape", "inspect", "serve", "mark-dead", "compact", "clear", "push"):
        assert run_cli(command, "--help").returncode == 0, command


def test_cli_mark_dead_compact_clear(metrics_dir):
    write_counter(metrics_dir, pid="5")
    db = MmapedDict(str(metrics_dir / "gauge_livesum_5.db"))
    db.write_value(mmap_key("g", "g", [], [], "G."), 1.0, 0.0)
    db.close()
    out = run_cli("mark-dead", "5", "--dir", str(metrics_dir))
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(str(metrics_dir))) == ["counter_5.db"]
    assert run_cli("compact", "--dir", str(metrics_dir), "--json").returncode == 0
    assert run_cli("clear", "--dir", str(metrics_dir)).returncode == 0
    assert [n for n in os.listdir(str(metrics_dir)) if n.endswith(".db")] == []


def test_cli_serve_stops_on_sigterm(metrics_dir):
    import signal
    import time

    from conftest import free_port, wait_until_serving

    write_counter(metrics_dir)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prometheus_multiproc", "serve", "--dir", str(metrics_dir), "--listen",
         "127.0.0.1:{}".format(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        status, _, body = wait_until_serving("http://127.0.0.1:{}/metrics".format(port), proc)
        assert (status, body) == (200, stock_exposition(metrics_dir))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_fork_child_neither_stops_nor_joins_the_parents_server(metrics_dir):
    import time

    write_counter(metrics_dir)
    expected = stock_exposition(metrics_dir)
    server = prometheus_multiproc.start_http_server(0, addr="127.0.0.1", path=metrics_dir)
    try:
        pid = os.fork()
        if pid == 0:  # the child: only Python code and os._exit
            code = 1
            try:
                server.shutdown()  # does nothing here: the server's threads are the parent's
                del server
                import gc

                gc.collect()
                if prometheus_multiproc.generate_latest(metrics_dir) == expected:
                    code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the fork child hung")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert http_get(server.url)[0::2] == (200, expected)
    finally:
        server.shutdown()


def test_cli_push_sends_the_exposition_to_a_gateway(metrics_dir):
    import http.server
    import threading

    write_counter(metrics_dir)
    received = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:{}".format(gateway.server_address[1])
        out = run_cli("push", "--dir", str(metrics_dir), "--gateway", url, "--job", "batch", "--label", "i=1")
        assert out.returncode == 0, out.stderr
        assert received == [
            ("/metrics/job/batch/i/1", "text/plain; version=0.0.4; charset=utf-8", stock_exposition(metrics_dir))
        ]
    finally:
        gateway.shutdown()
        gateway.server_close()
