#!/usr/bin/env python3
"""Times prometheus_client's multiprocess scrape: a fresh MultiProcessCollector in a
fresh CollectorRegistry, then generate_latest (text), on each directory given.

Python keeps nothing between scrapes (MultiProcessCollector re-reads and re-parses
every file on every collect), so its warm scrape is its cold scrape.

Usage: python py_scrape.py [--runs N] DIR...
Prints JSON: {DIR: {"runs": N, "min_ms": .., "median_ms": .., "body_bytes": ..}}
"""
import argparse, json, statistics, time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def scrape(path):
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('dirs', nargs='+')
    args = parser.parse_args()
    out = {}
    for path in args.dirs:
        body = scrape(path)  # warm the page cache and the interpreter, untimed
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            scrape(path)
            times.append((time.perf_counter() - t) * 1e3)
        out[path] = {'runs': args.runs, 'min_ms': min(times), 'median_ms': statistics.median(times),
                     'body_bytes': len(body)}
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
