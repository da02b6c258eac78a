"""Never fails a scrape: bad files are skipped whole and logged (logger
``prometheus_multiproc``); the good files' output is unchanged. Only a directory that
cannot be listed raises."""

import logging
import os
import shutil
import struct

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

import prometheus_multiproc
from prometheus_multiproc import MultiProcessCollector

from conftest import stock_exposition


def write_good(d):
    for pid, value in (("1", 1.0), ("2", 2.5)):
        db = MmapedDict(str(d / "counter_{}.db".format(pid)))
        db.write_value(mmap_key("jobs", "jobs_total", ["k"], ["v"], "Jobs."), value, 0.0)
        db.close()
        g = MmapedDict(str(d / "gauge_livesum_{}.db".format(pid)))
        g.write_value(mmap_key("busy", "busy", [], [], "Busy."), value, 0.0)
        g.close()


def entry(key: str, value: float) -> bytes:
    raw = key.encode()
    padded = raw + b" " * ((8 - (len(raw) + 4) % 8) % 8)
    return struct.pack("i", len(raw)) + padded + struct.pack("d", value) + struct.pack("d", 0.0)


def file_with(used: int, body: bytes, size: int = 4096) -> bytes:
    data = struct.pack("i", used) + b"\0" * 4 + body
    return data + b"\0" * max(0, size - len(data))


def write_corpus(d):
    """One bad file per way of being bad; returns their names."""
    good_key = mmap_key("jobs", "jobs_total", ["k"], ["v"], "Jobs.")
    good_entry = entry(good_key, 7.0)
    files = {
        "counter_10.db": b"",  # empty
        "counter_11.db": os.urandom(3),  # shorter than a header
        "counter_12.db": file_with(1 << 20, good_entry),  # used beyond the file
        "counter_13.db": file_with(8 + len(good_entry) - 3, good_entry),  # entry cut short
        "counter_14.db": file_with(8 + 24, entry("not json at all!", 1.0)),  # key not JSON
        "counter_15.db": file_with(8 + 16 + 8, struct.pack("i", -5) + b"\0" * 28),  # negative key length
        "counter_16.db": file_with(8 + len(entry('["a","a_total",{}]', 1.0)), entry('["a","a_total",{}]', 1.0)),
        "counter_17.db": file_with(8 + len(entry('["","x",{},"h"]', 1.0)), entry('["","x",{},"h"]', 1.0)),
        "histogram_18.db": file_with(
            8 + len(entry(mmap_key("h", "h_bucket", ["le"], ["abc"], "H."), 1.0)),
            entry(mmap_key("h", "h_bucket", ["le"], ["abc"], "H."), 1.0),
        ),
        "weird_19.db": file_with(8 + len(good_entry), good_entry),  # unknown name
        "counter_20.db": bytes([0xFF]) * 8 + os.urandom(100),  # garbage
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "gauge_all_21.db").mkdir()  # a directory
    os.mkfifo(str(d / "counter_22.db"))  # a FIFO: never opened blocking
    os.symlink(str(d / "counter_1.db"), str(d / "counter_23.db"))  # a symlink: never followed
    return sorted(list(files) + ["gauge_all_21.db", "counter_22.db", "counter_23.db"])


def test_bad_files_leave_the_good_files_output_unchanged(metrics_dir, tmp_path, caplog):
    write_good(metrics_dir)
    expected_text = stock_exposition(metrics_dir)
    expected_om = stock_exposition(metrics_dir, openmetrics=True)
    clean = tmp_path / "clean"
    shutil.copytree(str(metrics_dir), str(clean))
    bad = write_corpus(metrics_dir)

    caplog.set_level(logging.WARNING, logger="prometheus_multiproc")
    assert prometheus_multiproc.generate_latest(metrics_dir) == expected_text
    assert prometheus_multiproc.generate_latest(metrics_dir, openmetrics=True) == expected_om
    logged = [r for r in caplog.records if r.name.startswith("prometheus_multiproc")]
    assert all(r.levelno == logging.WARNING for r in logged)
    for name in bad:
        assert any(name in r.getMessage() for r in logged), (name, [r.getMessage() for r in logged])

    registry = CollectorRegistry()
    collector = MultiProcessCollector(registry, path=metrics_dir)
    assert generate_latest(registry) == expected_text
    skipped = sorted(os.path.basename(p) for p, _, _ in collector.last_skipped)
    assert skipped == bad
    reasons = {os.path.basename(p): reason for p, reason, _ in collector.last_skipped}
    assert reasons["counter_10.db"] == "empty"
    assert reasons["weird_19.db"] == "unknown_name"
    assert reasons["gauge_all_21.db"] == "not_regular_file"
    assert reasons["counter_23.db"] == "not_regular_file"
    assert reasons["histogram_18.db"] == "invalid_bucket_bound"
    assert prometheus_multiproc.generate_latest(clean) == expected_text


def test_self_metrics_count_skipped_files(metrics_dir):
    write_good(metrics_dir)
    (metrics_dir / "counter_9.db").write_bytes(b"")
    collector = MultiProcessCollector(None, path=metrics_dir, self_metrics=True)
    family = list(collector.collect())[-1]
    assert family.name == "prometheus_multiproc_skipped_files"
    empty = [s for s in family.samples if s.labels == {"reason": "empty"}]
    assert empty[0].value == 1.0


def test_a_directory_that_vanished_raises(metrics_dir):
    collector = MultiProcessCollector(None, path=metrics_dir)
    metrics_dir.rmdir()
    with pytest.raises(OSError):
        list(collector.collect())
