#!/usr/bin/env bash
# The Python writer benchmark (BENCHMARKS.md, "Python writer"): prometheus_client's own
# Counter.inc(), Counter.labels(..).inc(), Gauge.set() and Histogram.observe() in
# stock multiprocess mode against the same calls after prometheus_multiproc.install(),
# and Counter.labels(..) (with and without .inc()) also after
# install(fast_labels=False), in one run (scripts/py_writer_bench.py). The package is
# built (release) and installed into the pinned test venv by scripts/py-package-venv.sh.
#
# Usage: scripts/bench-python-writer.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/py-package-venv.sh)
"$py" scripts/py_writer_bench.py "$@"
