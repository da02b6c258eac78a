#!/usr/bin/env python3
"""Times prometheus_client's own metrics in multiprocess mode, stock against
``prometheus_multiproc.install()``, in one run (BENCHMARKS.md, "Python writer").

Runs scripts/py_hot_path.py twice, each in its own process (the value class is chosen
before the first metric is created): stock, then with PMP_PY_INSTALL=1, which also
times the value objects' own calls, so that the rest, prometheus_client's method code
around them, can be told apart. Figures are ns per call, median (min) of 5 loops of N
calls, the empty loop included.

Usage: python py_writer_bench.py [N]   (prints a Markdown table)
"""
import json
import os
import subprocess
import sys

N = sys.argv[1] if len(sys.argv) > 1 else "300000"
HOT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py_hot_path.py")
ROWS = [
    ("Counter.inc()", "counter_inc", "value_inc"),
    ("Counter.labels(..).inc()", "labeled_get_inc", "value_inc"),
    ("Gauge.set()", "gauge_set", "value_set"),
    ("Histogram.observe()", "histogram_observe", "value_observe"),
]


def run(installed: bool) -> dict:
    env = dict(os.environ, PMP_PY_INSTALL="1" if installed else "0")
    out = subprocess.run([sys.executable, HOT_PATH, N], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    stock, ours = run(False), run(True)
    loop = ours["empty_loop"]["median"]
    print(f"N = {N} calls per loop, median (min) of 5 loops, ns per call; empty loop {loop:.0f} ns\n")
    print("| operation | stock multiprocess | install() | stock ÷ install() | of install(): the value objects' calls "
          "| of install(): prometheus_client's method code |")
    print("|---|---|---|---|---|---|")
    for label, op, value in ROWS:
        s, i = stock[op], ours[op]
        v = ours[value]["median"] - loop
        rest = i["median"] - loop - v
        print(f"| `{label}` | {s['median']:.0f} ({s['min']:.0f}) | {i['median']:.0f} ({i['min']:.0f}) | "
              f"{s['median'] / i['median']:.1f}× | {v:.0f} | {rest:.0f} ({100 * rest / (rest + v):.0f} %) |")


if __name__ == "__main__":
    main()
