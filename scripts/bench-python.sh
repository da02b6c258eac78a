#!/usr/bin/env bash
# The Python scrape benchmark (BENCHMARKS.md, "Scrape from Python"): stock
# prometheus_client 0.26 against this package, from Python, in one run, on 64 files x
# 10,000 series and on 10,000 small files (scripts/bench_python.py).
#
# The package is built (release) and installed into the pinned test venv by
# scripts/py-package-venv.sh. Directories are written once under
# target/bench-dirs-python.
#
# Usage: scripts/bench-python.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
py=$(scripts/py-package-venv.sh)
"$py" scripts/bench_python.py "$target/bench-dirs-python" "$@"
