"""Differential: on the crate's scenarios, our bytes and samples equal stock
prometheus_client 0.26.0's (files merged in sorted order), text and OpenMetrics."""

import glob
import math
import os

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as stock_generate_latest
from prometheus_client.multiprocess import MultiProcessCollector as StockCollector
from prometheus_client.openmetrics.exposition import generate_latest as stock_generate_latest_om

import prometheus_multiproc
from prometheus_multiproc import MultiProcessCollector

from conftest import stock_exposition, stock_registry


def test_the_scenarios_cover_every_type_and_gauge_mode(scenarios):
    names = {d.name for d in scenarios}
    assert {"py_reference", "py_hostile", "py_floats", "py_raw_quirks", "py_utf8_names", "empty"} <= names
    reference = stock_exposition(next(d for d in scenarios if d.name == "py_reference")).decode()
    for line in (
        "# TYPE app_requests_total counter",
        "# TYPE app_latency_seconds histogram",
        "# TYPE app_payload_bytes summary",
        "# TYPE app_queue_len gauge",
    ):
        assert line + "\n" in reference, line
    for mode in ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"):
        assert "# TYPE app_g_" + mode + " gauge\n" in reference, mode


def test_generate_latest_equals_stock_text(scenarios):
    for d in scenarios:
        assert prometheus_multiproc.generate_latest(d) == stock_exposition(d), d.name


def test_generate_latest_equals_stock_openmetrics(scenarios):
    for d in scenarios:
        assert prometheus_multiproc.generate_latest(d, openmetrics=True) == stock_exposition(d, True), d.name


def test_collector_with_stock_generate_latest_equals_stock(scenarios):
    for d in scenarios:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(d))
        assert stock_generate_latest(registry) == stock_exposition(d), d.name
        assert stock_generate_latest_om(registry) == stock_exposition(d, True), d.name


def test_collector_yields_metrics_equal_to_stock(scenarios):
    for d in scenarios:
        ours = list(MultiProcessCollector(None, path=d).collect())
        files = sorted(glob.glob(os.path.join(str(d), "*.db")))
        theirs = list(StockCollector.merge(files, accumulate=True))
        assert [m.name for m in ours] == [m.name for m in theirs], d.name
        for a, b in zip(ours, theirs):
            assert (a.name, a.documentation, a.type, a.unit) == (b.name, b.documentation, b.type, b.unit)
            assert len(a.samples) == len(b.samples), (d.name, a.name)
            for s, t in zip(a.samples, b.samples):
                assert type(s) is type(t)
                # Labels compare as dicts (ours list them sorted by name; Python appends
                # `pid` and `le` last); NaN equals NaN here.
                same_value = s.value == t.value or (math.isnan(s.value) and math.isnan(t.value))
                assert s._replace(value=0.0) == t._replace(value=0.0) and same_value, (d.name, s, t)


def test_repeat_scrapes_follow_new_writes(metrics_dir):
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    db = MmapedDict(str(metrics_dir / "counter_1.db"))
    db.write_value(mmap_key("jobs", "jobs_total", [], [], "Jobs."), 1.0, 0.0)
    collector = MultiProcessCollector(None, path=metrics_dir)
    assert list(collector.collect())[0].samples[0].value == 1.0
    db.write_value(mmap_key("jobs", "jobs_total", [], [], "Jobs."), 5.0, 0.0)
    db.write_value(mmap_key("other", "other_total", [], [], "Other."), 2.0, 0.0)
    assert [m.samples[0].value for m in collector.collect()] == [5.0, 2.0]
    db.close()
    assert prometheus_multiproc.generate_latest(metrics_dir) == stock_exposition(metrics_dir)


def test_repeat_generate_latest_writes_each_round_s_values_as_stock(metrics_dir):
    # From the third call in a format on, the body is written into one kept from an
    # earlier call (the values replaced): every round must still be stock's, byte for
    # byte, values and series.
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    db = MmapedDict(str(metrics_dir / "counter_1.db"))
    keys = [mmap_key("req", "req_total", ["path"], ['/a"b\\' + str(k)], "Requests.") for k in range(50)]
    for openmetrics in (False, True):
        for round in range(5):
            for k, key in enumerate(keys):
                value = [0.5, 1e21, float("inf"), float("nan"), -0.0][(round + k) % 5]
                db.write_value(key, value if k == 0 else value + k, 0.0)
            if round == 3:
                new = "/new-" + str(openmetrics)
                keys.append(mmap_key("req", "req_total", ["path"], [new], "Requests."))
                db.write_value(keys[-1], 3.0, 0.0)
            ours = prometheus_multiproc.generate_latest(metrics_dir, openmetrics=openmetrics)
            assert ours == stock_exposition(metrics_dir, openmetrics), (openmetrics, round)
    db.close()


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "text/plain",
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0",
        "text/plain;version=1.0.0;escaping=allow-utf-8",
    ],
)
def test_render_negotiates_as_prometheus_client(scenarios, accept):
    from prometheus_client.exposition import choose_encoder

    d = next(d for d in scenarios if d.name == "py_utf8_names")
    registry = stock_registry(d)
    encoder, content_type = choose_encoder(accept)
    body, ours_type, headers = prometheus_multiproc.render(accept, None, d)
    assert (body, ours_type) == (encoder(registry), content_type)
    assert headers == [("Content-Type", content_type)]
