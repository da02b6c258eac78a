#!/usr/bin/env bash
# The scrape benchmark: benches/scrape.rs (ours, cold and warm) and Python's
# MultiProcessCollector + generate_latest (scripts/py_scrape.py) on the very same
# directories in one run, the memory of one cold scrape of 64 files x 10,000 series,
# then the BENCHMARKS.md table (stdout) and the plot docs/scrape.png.
#
# Usage: scripts/bench-scrape.sh [criterion args...]
# The directories are written once under $CARGO_TARGET_DIR/bench-dirs (target/ by
# default) by our Registry, one per worker ID; delete them to write them again.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
py=$(scripts/pyenv.sh)
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
  "$py" -m pip install --quiet --disable-pip-version-check matplotlib >&2
fi
out="$target/bench-scrape"
mkdir -p "$out"

echo "load at start: $(cat /proc/loadavg)" >&2
cargo build --release --example scrape_once >&2
"$target/release/examples/scrape_once" make > "$out/dirs.txt"
mapfile -t dirs < <(awk '{print $3}' "$out/dirs.txt")

cargo bench --bench scrape -- --noplot "$@" >&2
echo "load after cargo bench: $(cat /proc/loadavg)" >&2
"$py" scripts/py_scrape.py --runs 7 "${dirs[@]}" > "$out/python.json"
echo "load after Python: $(cat /proc/loadavg)" >&2

# Memory of one cold scrape (fresh process) of the largest directory: peak RSS from
# time(1), and the process's own RssAnon/RssFile right after the scrape.
big="${dirs[-1]}"
/usr/bin/time -v "$target/release/examples/scrape_once" scrape "$big" > "$out/memory.json" 2> "$out/memory.time"
max_rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/memory.time")

"$py" scripts/scrape_table.py "$out/dirs.txt" "$out/python.json" "$out/memory.json" "$max_rss" docs/scrape.png
echo "load at end: $(cat /proc/loadavg)" >&2
