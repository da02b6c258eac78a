"""The drop-in writer: ``prometheus_multiproc.MultiProcessValue`` and ``install()``.

Stock prometheus_client metrics are created with our value class (patched into
``prometheus_client.values.ValueClass`` for the test only); the files they write are
compared with what stock prometheus_client writes for the same operations, and read
back with stock prometheus_client's own reader."""

import glob
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.mmap_dict import MmapedDict

import prometheus_multiproc
from prometheus_multiproc import _native
from conftest import stock_exposition


def write_everything() -> None:
    """The same operations on every type and gauge mode (created with whatever
    ``values.ValueClass`` is now), hostile labels included."""
    registry = CollectorRegistry()
    c = Counter("w_requests", "Requests.", ["path", "code"], registry=registry)
    c.labels("/", "200").inc()
    c.labels('/"q\\', "500").inc(2.5)
    c.labels(path="/é", code="200").inc(0)
    for mode in ["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"]:
        g = Gauge("w_gauge_" + mode, "Gauge " + mode, ["k"], multiprocess_mode=mode, registry=registry)
        g.labels("a").set(3.5)
        if "mostrecent" not in mode:
            g.labels("b").inc(2)
            g.labels("b").dec(0.5)
    h = Histogram("w_latency", "Latency.", buckets=[0.1, 1.0, float("inf")], registry=registry)
    h.observe(0.05)
    h.observe(5)
    s = Summary("w_size", "Size.", registry=registry)
    s.observe(7)


@pytest.fixture
def value_class(monkeypatch):
    """Sets ``values.ValueClass`` for this test (restored after)."""

    def use(cls):
        monkeypatch.setattr(values, "ValueClass", cls)
        return cls

    return use


def test_files_read_by_stock_prometheus_client_equal_stock_files(tmp_path, monkeypatch, value_class):
    stock_dir, ours_dir = tmp_path / "stock", tmp_path / "ours"
    stock_dir.mkdir()
    ours_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(stock_dir))
    value_class(values.MultiProcessValue(lambda: "w1"))
    write_everything()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(ours_dir))
    value_class(prometheus_multiproc.MultiProcessValue(lambda: "w1"))
    write_everything()
    names = lambda d: sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(d), "*.db")))  # noqa: E731
    assert names(ours_dir) == names(stock_dir)
    for name in names(stock_dir):
        ours = list(MmapedDict.read_all_values_from_file(str(ours_dir / name)))
        stock = list(MmapedDict.read_all_values_from_file(str(stock_dir / name)))
        # Same entries, same order, same values; timestamps are the clock's.
        assert [(k, v) for k, v, *_ in ours] == [(k, v) for k, v, *_ in stock], name
        assert [ts > 0 for _, _, ts, *_ in ours] == [ts > 0 for _, _, ts, *_ in stock], name
    assert stock_exposition(ours_dir) == stock_exposition(stock_dir)
    assert prometheus_multiproc.generate_latest(str(ours_dir)) == stock_exposition(stock_dir)


def test_default_identifier_never_calls_getpid(metrics_dir, monkeypatch, value_class):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    value_class(prometheus_multiproc.MultiProcessValue())
    c = Counter("w_calls", "Calls.", registry=None)

    def no_getpid():
        raise AssertionError("os.getpid called per operation")

    monkeypatch.setattr(os, "getpid", no_getpid)
    for _ in range(10):
        c.inc()
    assert c._value.get() == 10.0
    monkeypatch.undo()
    assert sorted(os.listdir(str(metrics_dir))) == ["counter_{}.db".format(os.getpid()), "writer_{}.lock".format(os.getpid())]


def test_custom_identifier_is_called_per_operation_and_names_the_files(metrics_dir, monkeypatch, value_class):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    current = ["a1"]
    value_class(prometheus_multiproc.MultiProcessValue(lambda: current[0]))
    c = Counter("w_ident", "Ident.", registry=None)
    c.inc(2)
    current[0] = "b2"
    c.inc(5)
    assert c._value.get() == 5.0
    current[0] = "a1"  # back: continues what a1's file holds
    assert c._value.get() == 2.0
    c.inc()
    files = sorted(n for n in os.listdir(str(metrics_dir)) if n.endswith(".db"))
    assert files == ["counter_a1.db", "counter_b2.db"]
    read = lambda n: [v for _, v, *_ in MmapedDict.read_all_values_from_file(str(metrics_dir / n))]  # noqa: E731
    assert read("counter_a1.db") == [3.0] and read("counter_b2.db") == [5.0]


def test_several_identifiers_in_one_process(metrics_dir, monkeypatch, value_class):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    value_class(prometheus_multiproc.MultiProcessValue(lambda: "x1"))
    a = Counter("w_several", "Several.", registry=None)
    value_class(prometheus_multiproc.MultiProcessValue(lambda: "y2"))
    b = Counter("w_several", "Several.", registry=None)
    a.inc(1)
    b.inc(10)
    assert sorted(n for n in os.listdir(str(metrics_dir)) if n.endswith(".db")) == ["counter_x1.db", "counter_y2.db"]
    assert b"w_several_total 11.0" in prometheus_multiproc.generate_latest(str(metrics_dir))


def test_mostrecent_set_stores_the_time_and_exemplars_are_ignored(metrics_dir, monkeypatch, value_class):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    value_class(prometheus_multiproc.MultiProcessValue(lambda: "t1"))
    g = Gauge("w_recent", "Recent.", multiprocess_mode="mostrecent", registry=None)
    g.set(4)
    [(_, value, ts, _)] = MmapedDict.read_all_values_from_file(str(metrics_dir / "gauge_mostrecent_t1.db"))
    assert value == 4.0 and ts > 1e9
    c = Counter("w_ex", "Ex.", registry=None)
    c.inc(exemplar={"trace_id": "abc"})
    assert c._value.get_exemplar() is None and c._value.get() == 1.0
    with pytest.raises(RuntimeError):
        g.inc()  # prometheus_client's own check, above the value class


def test_install_without_a_directory_changes_nothing(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    before = values.ValueClass
    assert prometheus_multiproc.install() is False
    assert prometheus_multiproc.install(worker_id="auto") is False
    assert values.ValueClass is before


def test_install_refuses_a_bad_worker_id(metrics_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    before, labels = values.ValueClass, MetricWrapperBase.labels
    for bad in ["w_1", "auto:", "a/b", ""]:
        with pytest.raises(ValueError):
            prometheus_multiproc.install(worker_id=bad)
    assert values.ValueClass is before and MetricWrapperBase.labels is labels


def test_install_sets_the_value_class(metrics_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after
    monkeypatch.setattr(MetricWrapperBase, "labels", MetricWrapperBase.labels)  # patched by install()
    assert prometheus_multiproc.install(worker_id="auto:t") is True
    assert issubclass(values.ValueClass, _native.Value) and values.ValueClass._multiprocess
    c = Counter("w_installed", "Installed.", registry=None)
    c.inc()
    assert "counter_t-0.db" in os.listdir(str(metrics_dir))


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import prometheus_multiproc
    assert prometheus_multiproc.install(worker_id=sys.argv[1] or None)
    from prometheus_client import Counter, Gauge
    c = Counter("f_requests", "Requests.")            # declared in the master, as with preload_app
    g = Gauge("f_in_flight", "In flight.", multiprocess_mode="livesum")
    children = []
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            for _ in range(10):
                g.inc(); c.inc(); g.dec()
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    print(os.getpid(), " ".join(map(str, children)))
    """
)


@pytest.mark.parametrize("worker_id", ["", "auto:web"])
def test_fork_children_write_their_own_files_and_an_auto_master_claims_nothing(metrics_dir, worker_id):
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, worker_id], env=env, check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    master, children = out[0], out[1:]
    names = sorted(os.listdir(str(metrics_dir)))
    ids = {n.split("_")[-1][: -len(".db")] for n in names if n.startswith("counter_")}
    if worker_id:
        # The master declared but never wrote: no file, no slot. Children claim the
        # lowest free slots (one that exited frees its slot).
        assert not any(master in n for n in names), names
        assert "web-0" in ids and ids <= {"web-0", "web-1", "web-2"}, names
    else:
        # Under pids, the master's declarations create its (zero) entries, as in
        # stock prometheus_client; each child writes its own files.
        assert ids == set(children) | {master}, names
    assert b"f_requests_total 30.0" in prometheus_multiproc.generate_latest(str(metrics_dir))


HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import prometheus_multiproc
    assert prometheus_multiproc.install(worker_id="auto")
    from prometheus_client import Counter, Gauge
    Counter("k_requests", "Requests.").inc(3)
    Gauge("k_in_flight", "In flight.", multiprocess_mode="livesum").inc()
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_a_sigkilled_installed_worker_leaves_live_gauges_and_keeps_counters(metrics_dir):
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        body = prometheus_multiproc.generate_latest(str(metrics_dir))
        assert b"k_in_flight 1.0" in body and b"k_requests_total 3.0" in body
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    body = prometheus_multiproc.generate_latest(str(metrics_dir))
    assert b"k_in_flight" not in body and b"k_requests_total 3.0" in body
    done = prometheus_multiproc.compact(str(metrics_dir))
    assert done["dead_writers"] == ["worker-0"], done
    assert b"k_requests_total 3.0" in prometheus_multiproc.generate_latest(str(metrics_dir))


def test_after_fork_claims_the_automatic_slot_before_any_write(metrics_dir, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after
    monkeypatch.setattr(MetricWrapperBase, "labels", MetricWrapperBase.labels)  # patched by install()
    assert prometheus_multiproc.install(worker_id="auto:pf")
    c = Counter("w_after_fork", "After fork.", registry=None)
    assert os.listdir(str(metrics_dir)) == []  # declared, not written: no slot
    prometheus_multiproc.after_fork()
    assert sorted(os.listdir(str(metrics_dir))) == ["counter_pf-0.db", "writer_pf-0.lock"]
    c.inc()
    assert c._value.get() == 1.0
