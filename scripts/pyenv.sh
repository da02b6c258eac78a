#!/usr/bin/env bash
# Prints the path of a python with prometheus_client==0.26.0, creating the same venv
# the tests use (target/tmp/py-prometheus_client-0.26.0) when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${CARGO_TARGET_DIR:-$root/target}/tmp/py-prometheus_client-0.26.0"
if [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check prometheus_client==0.26.0 >&2
  echo prometheus_client==0.26.0 > "$venv/.installed"
fi
echo "$venv/bin/python"
