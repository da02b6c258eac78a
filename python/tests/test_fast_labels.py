"""``install()``'s fast path for prometheus_client's ``labels()`` (``fast_labels``).

Every test restores prometheus_client's own ``MetricWrapperBase.labels`` and
``values.ValueClass`` afterwards. Calls are checked against prometheus_client's own
method, called on a twin metric (same name, type and label names): the same children
(by label values and by identity) and the same exceptions with the same messages."""

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest
from prometheus_client import Counter, Enum, Gauge, Histogram, Info, Summary, values
from prometheus_client.metrics import MetricWrapperBase

import prometheus_multiproc
from prometheus_multiproc import _labels

STOCK_LABELS = MetricWrapperBase.labels
assert not hasattr(STOCK_LABELS, "__wrapped__"), "prometheus_client's labels() was left patched by an earlier test"


@pytest.fixture
def installed(metrics_dir, monkeypatch):
    """``install()`` in this process, with a metrics directory; undone after the test."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(MetricWrapperBase, "labels", STOCK_LABELS)
    assert prometheus_multiproc.install() is True
    assert MetricWrapperBase.labels is not STOCK_LABELS
    return metrics_dir


class Shout(str):
    """A ``str`` subclass whose ``str()`` differs from its value: equal to (and hashed
    as) ``"get"``, converted to ``"GET"`` by prometheus_client."""

    def __str__(self):
        return self.upper()


class CountingLock:
    """Stands in for a metric's ``_lock``, counting how often it is taken."""

    def __init__(self, lock):
        self.lock, self.taken = lock, 0

    def __enter__(self):
        self.taken += 1
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def outcome(call, metric, seen):
    """What ``call(metric)`` gives: ``("child", label values, index of the first
    result that was the same object)`` or ``("error", type, message)``."""
    try:
        child = call(metric)
    except Exception as e:  # compared with prometheus_client's, type and message
        return ("error", type(e), str(e))
    for i, earlier in enumerate(seen):
        if earlier is child:
            break
    else:
        i = len(seen)
        seen.append(child)
    return ("child", child._labelvalues, i)


CALLS = [
    lambda m: m.labels("get", "200"),  # a new child: prometheus_client creates it
    lambda m: m.labels("get", "200"),  # the fast path
    lambda m: m.labels(method="get", code="200"),
    lambda m: m.labels(code="200", method="get"),
    lambda m: m.labels("get", 200),  # converted by str(): the same child
    lambda m: m.labels(Shout("get"), "200"),  # == "get", but str() gives "GET": another child
    lambda m: m.labels("GET", "200"),
    lambda m: m.labels(Shout("get"), "200"),
    lambda m: m.labels("get", None),
    lambda m: m.labels("get", "None"),
    lambda m: m.labels(b"get", "200"),
    lambda m: m.labels("get"),
    lambda m: m.labels("get", "200", "x"),
    lambda m: m.labels(),
    lambda m: m.labels(("get", "200")),
    lambda m: m.labels("get", "200", method="get"),
    lambda m: m.labels(method="get"),
    lambda m: m.labels(method="get", code="200", x="1"),
    lambda m: m.labels(method="get", cod="200"),
    lambda m: m.labels("get", "200").labels("get", "200"),  # chained: an error
    lambda m: m.labels("", ""),
    lambda m: m.labels("é/\"\\\n", "200"),
    lambda m: m.labels("é/\"\\\n", "200"),
]


def make(kind, name):
    """A labeled metric (``method``, ``code``) of each type, unregistered."""
    if kind is Enum:
        return Enum(name, "Doc.", ["method", "code"], states=["a", "b"], registry=None)
    if kind is Gauge:
        return Gauge(name, "Doc.", ["method", "code"], multiprocess_mode="livesum", registry=None)
    return kind(name, "Doc.", ["method", "code"], registry=None)


@pytest.mark.parametrize("kind", [Counter, Gauge, Histogram, Summary, Info, Enum])
def test_same_children_and_errors_as_prometheus_clients_labels(installed, kind):
    fast, stock = make(kind, "fl_metric"), make(kind, "fl_metric")
    fast_seen, stock_seen = [], []
    patched = MetricWrapperBase.labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither path warns
        for i, call in enumerate(CALLS):
            got = outcome(call, fast, fast_seen)
            # The twin metric with prometheus_client's own method, unpatched.
            MetricWrapperBase.labels = STOCK_LABELS
            try:
                want = outcome(call, stock, stock_seen)
            finally:
                MetricWrapperBase.labels = patched
            assert got == want, "call {}".format(i)
    assert sorted(fast._metrics) == sorted(stock._metrics)
    assert ("GET", "200") in fast._metrics  # Shout("get") was converted, not looked up as "get"


def test_existing_children_skip_the_lock_new_ones_take_prometheus_clients_path(installed):
    c = Counter("fl_lock", "Doc.", ["method", "code"], registry=None)
    c._lock = lock = CountingLock(c._lock)
    first = c.labels("get", "200")
    assert lock.taken == 1  # created by prometheus_client's method, under its lock
    for _ in range(5):
        assert c.labels("get", "200") is first
    assert lock.taken == 1  # found without the lock
    assert c.labels(method="get", code="200") is first and c.labels("get", 200) is first
    assert lock.taken == 3  # keyword arguments and non-str values: prometheus_client's method
    first.inc(2)
    c.labels("get", "200").inc()
    assert first._value.get() == 3.0


@pytest.mark.parametrize("kind", [Counter, Gauge, Histogram, Summary, Info, Enum])
def test_unlabeled_metric_raises_as_prometheus_client(installed, kind):
    if kind is Enum:
        metric = Enum("fl_plain", "Doc.", states=["a", "b"], registry=None)
    else:
        metric = kind("fl_plain", "Doc.", registry=None)
    for args, kwargs in [(("x",), {}), ((), {}), ((), {"x": "1"})]:
        with pytest.raises(ValueError) as fast:
            metric.labels(*args, **kwargs)
        with pytest.raises(ValueError) as stock:
            STOCK_LABELS(metric, *args, **kwargs)
        assert str(fast.value) == str(stock.value) == "No label names were set when constructing {}".format(metric)


def test_removed_and_cleared_labelsets_get_new_children(installed):
    c = Counter("fl_removed", "Doc.", ["path"], registry=None)
    a, b = c.labels("/a"), c.labels("/b")
    assert c.labels("/a") is a
    with pytest.warns(UserWarning, match="not been implemented in  multi-process mode"):
        c.remove("/a")
    new_a = c.labels("/a")
    assert new_a is not a and c._metrics[("/a",)] is new_a
    assert c.labels("/a") is new_a and c.labels("/b") is b
    with pytest.warns(UserWarning):
        c.remove_by_labels({"path": "/b"})
    assert c.labels("/b") is not b
    with pytest.warns(UserWarning):
        c.clear()
    assert c._metrics == {}
    assert c.labels("/a") is not new_a and list(c._metrics) == [("/a",)]


def test_concurrent_calls_create_one_child_per_labelset(installed):
    c = Counter("fl_threads", "Doc.", ["path", "code"], registry=None)
    start = threading.Barrier(4)
    results = [[] for _ in range(4)]

    def work(out):
        start.wait()
        for i in range(300):
            child = c.labels(str(i % 50), "200")
            child.inc()
            out.append(child)

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c._metrics) == 50
    for out in results:
        assert [child is c._metrics[(str(i % 50), "200")] for i, child in enumerate(out)] == [True] * 300
    assert sum(child._value.get() for child in c._metrics.values()) == 4 * 300


def test_install_patches_once_and_fast_labels_false_restores(metrics_dir, monkeypatch):
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(MetricWrapperBase, "labels", STOCK_LABELS)
    assert prometheus_multiproc.install() is False  # no directory: nothing changes
    assert MetricWrapperBase.labels is STOCK_LABELS
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    assert prometheus_multiproc.install(fast_labels=False) is True
    assert MetricWrapperBase.labels is STOCK_LABELS
    assert prometheus_multiproc.install() is True
    fast = MetricWrapperBase.labels
    assert fast is not STOCK_LABELS and fast.__wrapped__ is STOCK_LABELS and _labels.installed()
    assert fast.__doc__ == STOCK_LABELS.__doc__ and fast.__name__ == "labels"
    assert prometheus_multiproc.install(worker_id="auto") is True
    assert MetricWrapperBase.labels is fast  # never wrapped twice
    with pytest.raises(TypeError):
        prometheus_multiproc.install(None, False)  # fast_labels is keyword-only
    assert prometheus_multiproc.install(fast_labels=False) is True
    assert MetricWrapperBase.labels is STOCK_LABELS and not _labels.installed()


def test_fast_path_applies_to_metrics_created_before_install(metrics_dir, monkeypatch):
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(MetricWrapperBase, "labels", STOCK_LABELS)
    c = Counter("fl_before", "Doc.", ["path"], registry=None)  # prometheus_client's own values
    child = c.labels("/")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    assert prometheus_multiproc.install() is True
    c._lock = lock = CountingLock(c._lock)
    assert c.labels("/") is child and lock.taken == 0


def test_other_versions_and_other_wrappers_are_left_alone(monkeypatch):
    monkeypatch.setattr(MetricWrapperBase, "labels", STOCK_LABELS)
    monkeypatch.setattr(_labels, "_supported_version", lambda: False)
    assert _labels.enable(True) is False and MetricWrapperBase.labels is STOCK_LABELS
    monkeypatch.undo()
    monkeypatch.setattr(MetricWrapperBase, "labels", STOCK_LABELS)

    def theirs(self, *args, **kwargs):
        return STOCK_LABELS(self, *args, **kwargs)

    theirs.__wrapped__ = STOCK_LABELS
    MetricWrapperBase.labels = theirs
    assert _labels.enable(True) is False and MetricWrapperBase.labels is theirs
    assert _labels.enable(False) is False and MetricWrapperBase.labels is theirs
    MetricWrapperBase.labels = STOCK_LABELS
    assert _labels._supported_version()  # the pinned prometheus_client 0.26.0
    assert _labels.enable(True) is True and _labels.enable(True) is True
    assert MetricWrapperBase.labels.__wrapped__ is STOCK_LABELS


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    import prometheus_multiproc
    assert prometheus_multiproc.install(worker_id=sys.argv[1] or None, fast_labels=sys.argv[2] == "fast")
    from prometheus_client import Counter
    from prometheus_multiproc import _labels
    assert _labels.installed() == (sys.argv[2] == "fast")
    c = Counter("fl_requests", "Requests.", ["path", "code"])
    c.labels("/", "200")                               # created in the master, before the fork
    children = []
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            def work():
                for j in range(500):
                    c.labels("/", "200").inc()
                    c.labels(path="/", code=200).inc(0.5)
                    c.labels("/new", str(j % 5)).inc()
            threads = [threading.Thread(target=work) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    print("done")
    """
)


@pytest.mark.parametrize("worker_id", ["", "auto:fl"])
@pytest.mark.parametrize("mode", ["fast", "stock"])
def test_forked_threaded_workers_exact_totals(metrics_dir, worker_id, mode):
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, worker_id, mode], env=env, check=True, capture_output=True, text=True,
        timeout=120,
    )
    assert out.stdout.split() == ["done"]
    body = prometheus_multiproc.generate_latest(str(metrics_dir)).decode()
    per_process = 2 * 500
    assert 'fl_requests_total{{code="200",path="/"}} {}\n'.format(3 * per_process * 1.5) in body, body
    for code in range(5):
        assert 'fl_requests_total{{code="{}",path="/new"}} {}\n'.format(code, 3 * per_process / 5) in body, body
