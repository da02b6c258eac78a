#!/usr/bin/env bash
# Scrape time with 10,000 dead-worker files before and after compaction: ours
# (benches/compaction.rs, cold and warm) and Python's MultiProcessCollector +
# generate_latest on the same two directories, in one run. Prints the
# BENCHMARKS.md table.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/pyenv.sh)
echo "load at start: $(cat /proc/loadavg)" >&2
cargo bench --bench compaction -- --noplot "$@" >&2
dirs=(target/bench-dirs/compaction-before target/bench-dirs/compaction-after)
"$py" scripts/py_scrape.py --runs 3 "${dirs[@]}" > target/py_compaction.json
echo "load at end: $(cat /proc/loadavg)" >&2
python3 - target/py_compaction.json <<'PY'
import json, os, sys
py = json.load(open(sys.argv[1]))
def ms(bench):
    e = json.load(open(os.path.join('target/criterion/compaction', bench, 'new/estimates.json')))
    return e['median']['point_estimate'] / 1e6
files = {d: len([f for f in os.listdir(d) if f.endswith('.db')]) for d in py}
print('| directory | `.db` files | ours cold | ours warm | Python | Python ÷ ours (cold) |')
print('|---|---|---|---|---|---|')
for name, d in [('before compaction', 'target/bench-dirs/compaction-before'), ('after compaction', 'target/bench-dirs/compaction-after')]:
    tag = 'before' if 'before' in d else 'after'
    cold, warm, p = ms(f'scrape_cold_{tag}'), ms(f'scrape_warm_{tag}'), py[d]['median_ms']
    print(f'| {name} | {files[d]} | {cold:.1f} ms | {warm:.1f} ms | {p:.1f} ms | {p / cold:.1f}× |')
PY
