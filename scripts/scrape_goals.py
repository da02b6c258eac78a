#!/usr/bin/env python3
"""Issue 13's goals table in one run: ours against stock prometheus_client 0.26
(MultiProcessCollector + generate_latest in a fresh registry, in this process) on the
directories prometheus_client's own MmapedDict wrote (scripts/py_dirs.py).

* cold: a fresh `prometheus-multiproc scrape --dir DIR` process per run, started,
  scraping and printing to /dev/null (what a user who scrapes from the command line
  pays, process start included);
* cold, in process: a fresh `Collector` + `collect` + text `render` per run
  (`scrape_once json`);
* warm: a repeat scrape of one long-lived `Collector` (`scrape_once json`);
* heap: `RssAnon` of a fresh process after one cold scrape of 64 x 10,000, minus
  before it (`scrape_once scrape`);
* hot path: criterion medians of `benches/hot_path.rs`, if its results are there.

Every figure is min / median of RUNS runs; Python's too (its warm scrape is its cold
one: it keeps nothing). Before timing, the CLI's body is checked to hold the same
lines as Python's (Python merges in directory order, so only the order may differ).

Usage: python scrape_goals.py ROOT CLI SCRAPE_ONCE [--runs N] [--criterion DIR]
Prints the markdown table on stdout and progress on stderr.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_dirs import ensure_all  # noqa: E402


def python_scrape(path):
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def timed(fn, runs):
    fn()  # untimed: the page cache and the interpreter
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times), statistics.median(times)


def cli_scrape(cli, path, out=subprocess.DEVNULL):
    return subprocess.run([cli, "scrape", "--dir", path], stdout=out, check=True)


def load():
    return open("/proc/loadavg").read().strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("cli")
    parser.add_argument("scrape_once")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--criterion", help="target/criterion, for the hot-path rows")
    args = parser.parse_args()
    big, small = ensure_all(args.root)
    print("load at start: %s" % load(), file=sys.stderr)
    fig = {}
    for label, d, warm_runs in (("64x10000", big, 50), ("10000files", small, 50)):
        ours = cli_scrape(args.cli, d, subprocess.PIPE).stdout
        theirs = python_scrape(d)
        assert sorted(ours.splitlines()) == sorted(theirs.splitlines()), "%s: bodies differ" % d
        fig[label, "python"] = timed(lambda: python_scrape(d), args.runs)
        fig[label, "cli"] = timed(lambda: cli_scrape(args.cli, d), args.runs)
        out = subprocess.run([args.scrape_once, "json", d, str(args.runs), str(warm_runs)],
                             capture_output=True, check=True, text=True).stdout
        j = json.loads(out)
        fig[label, "cold"] = (j["cold_min_ms"], j["cold_median_ms"])
        fig[label, "warm"] = (j["warm_min_ms"], j["warm_median_ms"])
        for k in ("python", "cli", "cold", "warm"):
            print("%s %s: min %.2f ms, median %.2f ms (load %s)" % (label, k, *fig[label, k], load()),
                  file=sys.stderr)
    mem = json.loads(subprocess.run([args.scrape_once, "scrape", big], capture_output=True, check=True,
                                    text=True).stdout)
    heap_kib = mem["after_kib"]["RssAnon"] - mem["before_kib"]["RssAnon"]
    print("load at end: %s" % load(), file=sys.stderr)

    def ms(pair):
        return "%.2f / %.2f ms" % pair if pair[1] < 100 else "%.0f / %.0f ms" % pair

    def ratio(label, k):
        r = fig[label, "python"][1] / fig[label, k][1]
        return "%.1f×" % r if r < 10 else "%.0f×" % r

    rows = [
        ("cold scrape, fresh CLI process, 64 × 10,000 Python-written", "64x10000", "cli", "≥ 80×"),
        ("(same, fresh `Collector` in a running process)", "64x10000", "cold", ""),
        ("warm scrape, long-lived `Collector`, 64 × 10,000", "64x10000", "warm", "≥ 500×"),
        ("10,000 small dead-worker files, cold (fresh CLI process)", "10000files", "cli", "≥ 5×"),
        ("(same, fresh `Collector` in a running process)", "10000files", "cold", ""),
        ("10,000 small dead-worker files, warm", "10000files", "warm", "≥ 50×"),
    ]
    print("| figure | ours (min / median) | Python (min / median) | Python ÷ ours (medians) | goal |")
    print("|---|---|---|---|---|")
    for name, label, k, goal in rows:
        print("| %s | %s | %s | %s | %s |" % (name, ms(fig[label, k]), ms(fig[label, "python"]), ratio(label, k), goal))
    print("| collector heap, 64 × 10,000 (`RssAnon` after − before one cold scrape) | %.1f MiB | | | ≤ 17 MiB |"
          % (heap_kib / 1024))
    if args.criterion:
        for bench in ("counter_inc", "labeled_labels_inc", "histogram_observe"):
            path = os.path.join(args.criterion, "hot_path", bench, "new", "estimates.json")
            if os.path.exists(path):
                e = json.load(open(path))
                print("| hot path `%s` (criterion median) | %.2f ns | | | no regression |"
                      % (bench, e["median"]["point_estimate"]))


if __name__ == "__main__":
    main()
