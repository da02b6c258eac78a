#!/usr/bin/env bash
# Runs benches/hot_path.rs (with the derive feature: typed label sets) and times Python's multiprocess hot path in the same run,
# then prints the BENCHMARKS.md table.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/pyenv.sh)
cargo bench --features derive --bench hot_path -- --noplot "$@" >&2
"$py" scripts/py_hot_path.py 1000000 > target/py_hot_path.json
python3 scripts/bench_table.py hot_path target/py_hot_path.json
