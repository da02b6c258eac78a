#!/usr/bin/env python3
"""The benchmark directories written by prometheus_client's own MmapedDict (stock
0.26 only, no other import), shared by scripts/bench_python.py and
scripts/bench-scrape.sh:

* ``64x10000``: 64 worker files of the same 10,000 ``req_total{method,path}`` series
  (the layout of benches/support/scrape_dirs.rs, written by Python instead);
* ``10000files``: 10,000 small files, 2,500 dead stock workers (pids 10000-12499) each
  leaving a counter (4 series), a histogram (1 series, 10 buckets), a max gauge and a
  summary file.

Usage: python py_dirs.py ROOT  (prints the two directories, one per line)
"""

import os
import sys

from prometheus_client.mmap_dict import MmapedDict, mmap_key

METHODS = ["GET", "POST", "PUT", "DELETE"]
MARKER = ".complete-v1"


def write_big(d):
    keys = [
        mmap_key("req", "req_total", ["method", "path"], [METHODS[i % 4], "/api/v1/items/%d" % i], "Requests served.")
        for i in range(10_000)
    ]
    for f in range(64):
        db = MmapedDict(os.path.join(d, "counter_%d.db" % (1000 + f)))
        for i, key in enumerate(keys):
            db.write_value(key, float((i + f) % 97), 0.0)
        db.close()


def write_small(d):
    counter_keys = [
        mmap_key("req", "req_total", ["method", "path"], [m, "/"], "Requests served.") for m in METHODS
    ]
    bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"]
    hist_keys = [mmap_key("lat", "lat_bucket", ["le"], [b], "Latency.") for b in bounds]
    hist_keys += [mmap_key("lat", "lat_sum", [], [], "Latency."), mmap_key("lat", "lat_count", [], [], "Latency.")]
    for w in range(2_500):
        pid = 10_000 + w
        for name, keys in (("counter", counter_keys), ("histogram", hist_keys)):
            db = MmapedDict(os.path.join(d, "%s_%d.db" % (name, pid)))
            for i, key in enumerate(keys):
                db.write_value(key, float((i + w) % 7), 0.0)
            db.close()
        db = MmapedDict(os.path.join(d, "gauge_max_%d.db" % pid))
        db.write_value(mmap_key("queue", "queue", [], [], "Queue length."), float(w % 13), 0.0)
        db.close()
        db = MmapedDict(os.path.join(d, "summary_%d.db" % pid))
        db.write_value(mmap_key("size", "size_count", [], [], "Sizes."), 2.0, 0.0)
        db.write_value(mmap_key("size", "size_sum", [], [], "Sizes."), float(w), 0.0)
        db.close()


def ensure(root, name, writer):
    d = os.path.join(root, name)
    if not os.path.exists(os.path.join(d, MARKER)):
        if os.path.isdir(d):
            for n in os.listdir(d):
                os.remove(os.path.join(d, n))
        os.makedirs(d, exist_ok=True)
        writer(d)
        open(os.path.join(d, MARKER), "w").close()
    return d


def ensure_all(root):
    os.makedirs(root, exist_ok=True)
    return [ensure(root, "64x10000", write_big), ensure(root, "10000files", write_small)]


if __name__ == "__main__":
    for d in ensure_all(sys.argv[1]):
        print(d)
