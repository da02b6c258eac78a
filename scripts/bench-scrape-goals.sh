#!/usr/bin/env bash
# Issue 13's goals table in one run (BENCHMARKS.md, "Scrape at the limit"): ours (the
# command line, and a long-lived Collector) against stock prometheus_client 0.26 on
# directories written by prometheus_client itself, the collector's heap, and the hot
# path's criterion medians, all timed in this run (scripts/scrape_goals.py); then the
# floors the machine sets, measured without the collector (examples/scrape_limits.rs).
#
# Usage: scripts/bench-scrape-goals.sh [--runs N] [--no-hot-path]
# The directories are written once under target/bench-dirs-python (shared with
# scripts/bench-python.sh); delete them to write them again.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
runs=7
hot=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --no-hot-path) hot=0; shift ;;
    *) echo "usage: $0 [--runs N] [--no-hot-path]" >&2; exit 2 ;;
  esac
done
py=$(scripts/pyenv.sh)
cargo build --release --bin prometheus-multiproc --example scrape_once --example scrape_limits >&2
criterion=()
if [ "$hot" = 1 ]; then
  cargo bench --bench hot_path -- --noplot --warm-up-time 1 --measurement-time 3 \
    'hot_path/(counter_inc|labeled_labels_inc|histogram_observe)$' >&2
  criterion=(--criterion "$target/criterion")
fi
"$py" scripts/scrape_goals.py "$target/bench-dirs-python" "$target/release/prometheus-multiproc" \
  "$target/release/examples/scrape_once" --runs "$runs" "${criterion[@]}"
echo
echo "Floors on this machine, same run (examples/scrape_limits.rs):"
echo
"$target/release/examples/scrape_limits" "$target/bench-dirs-python/10000files" "$target/bench-dirs-python/64x10000" |
  sed 's/^/    /'
