#!/usr/bin/env bash
# Prints the path of a python with the Python package (python/) installed, in the venv
# `cargo test --test python_package` uses (target/tmp/python-package-venv, every tool
# pinned by python/tests/requirements.txt): creates the venv when it is missing or its
# requirements changed, then builds and installs the package (pip + maturin, release
# build in target/python-build, so it never waits on another cargo's build lock).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/tmp/python-package-venv"
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$(cat "$root/python/tests/requirements.txt")" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/python/tests/requirements.txt" >&2
  cp "$root/python/tests/requirements.txt" "$venv/.requirements"
fi
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$target/python-build" \
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --force-reinstall "$root/python" >&2
echo "$venv/bin/python"
