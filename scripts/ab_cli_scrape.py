#!/usr/bin/env python3
"""Alternating A/B timing of fresh `prometheus-multiproc scrape` processes.

Usage: scripts/ab_cli_scrape.py DIR [--runs N] BIN [BIN...]

Each BIN is a `prometheus-multiproc` binary, optionally prefixed with one environment
variable as `NAME=VALUE@BIN` (for example `GLIBC_TUNABLES=glibc.malloc.hugetlb=1@/tmp/pm`
or `MIMALLOC_ALLOW_THP=0@/tmp/pm`), run with that variable set. Every round runs each BIN once, in turn, as
`BIN scrape --dir DIR > /dev/null`, so that the machine's slow and fast spells fall
on all of them alike; the wall time of each process (spawn to exit) is recorded.
Prints p10, p25, median and p75 per BIN, in ms. Used for BENCHMARKS.md, "Sixth round" and "Seventh round".
"""
import argparse
import os
import subprocess
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("bins", nargs="+")
    args = parser.parse_args()
    times = {spec: [] for spec in args.bins}
    with open(os.devnull, "w") as devnull:
        for _ in range(args.runs):
            for spec in args.bins:
                env = dict(os.environ)
                binary = spec
                if "@" in spec:
                    assignment, binary = spec.split("@", 1)
                    name, value = assignment.split("=", 1)
                    env[name] = value
                start = time.perf_counter()
                subprocess.run([binary, "scrape", "--dir", args.dir], stdout=devnull, env=env, check=True)
                times[spec].append((time.perf_counter() - start) * 1000)
    for spec, values in times.items():
        v = sorted(values)
        n = len(v)
        print(f"{spec}: p10 {v[n // 10]:.2f} p25 {v[n // 4]:.2f} median {v[n // 2]:.2f} p75 {v[3 * n // 4]:.2f} ms")


if __name__ == "__main__":
    main()
