#!/usr/bin/env bash
# The Python scrape benchmark (BENCHMARKS.md, "Scrape from Python"): stock
# prometheus_client 0.26 against this package, from Python, in one run, on 64 files x
# 10,000 series and on 10,000 small files (scripts/bench_python.py).
#
# Uses the venv of `cargo test --test python_package` (target/tmp/python-package-venv,
# pinned by python/tests/requirements.txt), creating it when missing, and installs the
# package into it with a release build (maturin's default) in target/python-build.
# Directories are written once under target/bench-dirs-python.
#
# Usage: scripts/bench-python.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/tmp/python-package-venv"
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$(cat python/tests/requirements.txt)" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/tests/requirements.txt >&2
  cp python/tests/requirements.txt "$venv/.requirements"
fi
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$target/python-build" \
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --force-reinstall ./python >&2
"$venv/bin/python" scripts/bench_python.py "$target/bench-dirs-python" "$@"
