#!/usr/bin/env python3
"""Builds the BENCHMARKS.md scrape table and the plot docs/scrape.png from criterion's
samples (benches/scrape.rs), the Python timings (py_scrape.py) and the memory of one
cold scrape (examples/scrape_once.rs under /usr/bin/time -v).

Usage: scrape_table.py DIRS_TXT PY_JSON MEMORY_JSON MAX_RSS_KIB PLOT_PNG
DIRS_TXT has one "FILES SERIES DIR" line per shape (scrape_once make)."""
import json, os, statistics, sys

dirs_txt, py_json, memory_json, max_rss_kib, plot_png = sys.argv[1:6]
root = os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'criterion', 'scrape')
shapes = [line.split() for line in open(dirs_txt) if line.strip()]
py = json.load(open(py_json))
memory = json.load(open(memory_json))


def ours(kind, files, series):
    """Min and median of criterion's per-iteration times, in ms."""
    with open(os.path.join(root, f'{kind}_{files}x{series}', 'new', 'sample.json')) as f:
        s = json.load(f)
    per_iter = [t / n / 1e6 for t, n in zip(s['times'], s['iters'])]
    return min(per_iter), statistics.median(per_iter)


rows = []
for files, series, path in shapes:
    files, series = int(files), int(series)
    cold, warm, p = ours('cold', files, series), ours('warm', files, series), py[path]
    rows.append((files, series, cold, warm, (p['min_ms'], p['median_ms'])))

print('| files × series | ours cold (min / median) | ours warm (min / median) | Python (min / median) '
      '| Python ÷ ours, cold | Python ÷ ours, warm |')
print('|---|---|---|---|---|---|')
for files, series, cold, warm, p in rows:
    print(f'| {files} × {series:,} | {cold[0]:.2f} / {cold[1]:.2f} ms | {warm[0]:.2f} / {warm[1]:.2f} ms '
          f'| {p[0]:.0f} / {p[1]:.0f} ms | {p[1] / cold[1]:.0f}× | {p[1] / warm[1]:.0f}× |')
print('\nRatios are of medians. Python has no state between scrapes: its warm scrape is its cold one.')
after = memory['after_kib']
print(f'\nOne cold scrape of {rows[-1][0]} × {rows[-1][1]:,} in a fresh process ({memory["dir"]}): '
      f'peak RSS {int(max_rss_kib) / 1024:.1f} MiB (time -v), of which, right after the scrape, '
      f'RssAnon {after["RssAnon"] / 1024:.1f} MiB (heap: the collector\'s state, the scrape and the body) and '
      f'RssFile {after["RssFile"] / 1024:.1f} MiB (page-cache pages of the mapped files and of the binary, '
      f'shared with the writers).')

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

x = [f * s for f, s, *_ in rows]
fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
ax.plot(x, [r[4][1] for r in rows], 'o-', label='Python prometheus_client 0.26 (cold = warm)')
ax.plot(x, [r[2][1] for r in rows], 's-', label='prometheus-multiproc, cold (fresh Collector)')
ax.plot(x, [r[3][1] for r in rows], '^-', label='prometheus-multiproc, warm (repeat scrape)')
ax.set_xscale('log')
ax.set_yscale('log')
ax.set_xticks(x, [f'{f}×{s:,}\n({f * s:,})' for f, s, *_ in rows], fontsize=8)
ax.minorticks_off()
ax.set_xlabel('files × series per file (entries)')
ax.set_ylabel('scrape + text exposition, median (ms)')
ax.set_title('Scrape time: Python vs prometheus-multiproc')
ax.grid(True, which='both', alpha=.3)
ax.legend(fontsize=8)
fig.tight_layout()
os.makedirs(os.path.dirname(plot_png) or '.', exist_ok=True)
fig.savefig(plot_png)
print(f'\nPlot: {plot_png}')
