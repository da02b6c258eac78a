"""Writes every Python scenario of the scrape-side differential tests under
sys.argv[1], one directory each (tests/collector_differential.rs and the Python
package's python/tests/ both use it)."""
import math, os, sys
root = sys.argv[1]
from prometheus_client import Counter, Gauge, Histogram, Summary, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

ident = ['0']

def new_dir(name, first):
    d = os.path.join(root, name)
    os.makedirs(d)
    os.environ['PROMETHEUS_MULTIPROC_DIR'] = d
    ident[0] = first
    values.ValueClass = values.MultiProcessValue(lambda: ident[0])
    return d

MODES = ['all', 'liveall', 'min', 'livemin', 'max', 'livemax', 'sum', 'livesum', 'mostrecent', 'livemostrecent']

def reference():
    new_dir('py_reference', '1001')
    reqs = Counter('app_requests', 'HTTP requests.', ['method', 'status'], registry=None)
    jobs = Counter('app_jobs_total', 'Jobs processed.', registry=None)
    lat = Histogram('app_latency_seconds', 'Latency.', ['route'], buckets=[0.1, 0.5, 1, 5], registry=None)
    size = Summary('app_payload_bytes', 'Payload size.', registry=None)
    gauges = {m: Gauge('app_g_' + m, 'Gauge in mode ' + m + '.', multiprocess_mode=m, registry=None) for m in MODES}
    lg = Gauge('app_queue_len', 'Labeled gauge (mode all).', ['queue'], registry=None)
    inprog = Gauge('app_inprogress', 'In-progress (livesum).', multiprocess_mode='livesum', registry=None)
    for i, w in enumerate(['1001', '1002', '1003']):
        ident[0] = w
        for _ in range(10 * (i + 1)):
            reqs.labels('get', '200').inc()
        reqs.labels(method='post', status='500').inc(0.5 * (i + 1))
        jobs.inc(i + 1)
        for v in (0.05, 0.3, 0.7 * (i + 1), 10.0):
            lat.labels('/a').observe(v)
        if i == 2:
            lat.labels('/b').observe(0.2)
        size.observe(100 * (i + 1))
        for m, g in gauges.items():
            g.set(10 * (i + 1))
        lg.labels('q%d' % (i % 2)).set(i + 0.25)
        inprog.inc(3)
        inprog.dec(1)
    # mostrecent: the first worker writes last, so its value is the newest.
    for w, v in (('1003', 30), ('1002', 20), ('1001', 10)):
        ident[0] = w
        gauges['mostrecent'].set(v)
        gauges['livemostrecent'].set(v)

HOSTILE_HELP = 'Help: "quotes", \\backslash\\, new\nline, tab\t, ctl\x01\x1f\x7f, \u00e9, \U0001F600, \u4e2d\u6587, \\n literal'
HOSTILE_VALUES = ['quote"d', 'back\\slash', 'new\nline', 'tab\there', 'ctl\x01\x1f\x7f', '\u00e9 \u00fc \u00df',
                  '\U0001F600\U0001F389', '\u4e2d\u6587', '', ' lead and trail ', '{}=,#', 'a\\nb', '"\\"', '\r\n']

def hostile():
    new_dir('py_hostile', '1')
    c = Counter('hostile_requests', HOSTILE_HELP, ['v'], registry=None)
    g = Gauge('hostile_gauge', HOSTILE_HELP, ['v', 'w'], registry=None)
    gs = Gauge('hostile_gauge_sum', HOSTILE_HELP, ['v'], multiprocess_mode='livesum', registry=None)
    h = Histogram('hostile_latency_seconds', HOSTILE_HELP, ['v'], buckets=[0.1, 1], registry=None)
    s = Summary('hostile_size_bytes', HOSTILE_HELP, ['v'], registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        for j, v in enumerate(HOSTILE_VALUES):
            c.labels(v).inc(j + 1)
            g.labels(v, str(j)).set(j + 0.5)
            gs.labels(v).inc(j)
            h.labels(v).observe(j / 10.0)
            s.labels(v).observe(j)

def utf8_names():
    new_dir('py_utf8_names', '1')
    a = Counter('app.requests', 'Dotted name.', ['la.bel', 'plain'], registry=None)
    b = Gauge('m\u00e9trique', 'Accents.', ['cl\u00e9'], multiprocess_mode='sum', registry=None)
    c = Gauge('1starts_with_digit', 'Digit first.', registry=None)
    d = Histogram('lat.seconds', 'Dotted histogram.', ['r.oute'], buckets=[1], registry=None)
    e = Gauge('with spaces and "quotes"', 'Spaces.', ['x y'], multiprocess_mode='max', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        a.labels('v\u00e9', 'p').inc(i + 1)
        b.labels('\U0001F600').set(i + 1)
        c.set(i)
        d.labels('/x').observe(0.5 * i)
        e.labels('z').set(7 - i)

def colon_names():
    new_dir('py_colon_names', '1')
    a = Counter('app:requests', 'Colon counter.', ['a'], registry=None)
    b = Gauge('job:load:avg', 'Colon gauge.', multiprocess_mode='max', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        a.labels('x').inc(i + 1)
        b.set(i + 0.5)

SPECIALS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e6, 5e-324, 1234567.0, 999999.0, 1e16, 1e15,
            123456789012.5, 0.1 + 0.2, 1e-05, 0.0001, -1234567.0, 1e300, 2.5e-7, 1e10, -5e-324]

def floats():
    new_dir('py_floats', '1')
    ga = Gauge('float_all', 'Every special float.', ['i'], registry=None)
    up = Counter('sum_order_up', 'Sums 0.1, 0.2, 0.3.', registry=None)
    down = Counter('sum_order_down', 'Sums 0.3, 0.2, 0.1.', registry=None)
    cinf = Counter('counter_special', 'Inf and NaN counters.', ['k'], registry=None)
    gsum = Gauge('gauge_sum_order', 'Order-dependent sum.', multiprocess_mode='sum', registry=None)
    gmin = Gauge('gauge_min_nan_first', 'NaN first sticks.', multiprocess_mode='min', registry=None)
    gmin2 = Gauge('gauge_livemin_nan_later', 'NaN later ignored.', multiprocess_mode='livemin', registry=None)
    gminz = Gauge('gauge_min_zeros', 'Minus zero first.', multiprocess_mode='min', registry=None)
    gmax = Gauge('gauge_max_zeros', 'Zero first.', multiprocess_mode='max', registry=None)
    gmaxn = Gauge('gauge_livemax_nan_first', 'NaN first.', multiprocess_mode='livemax', registry=None)
    gmr = Gauge('gauge_mostrecent_nan', 'Newest is NaN.', multiprocess_mode='mostrecent', registry=None)
    hist = Histogram('hist_float', 'Special bounds.', buckets=[5e-324, 1e-05, 0.005, 1.0, 1e6, 1e10, 1e16], registry=None)
    summ = Summary('summary_float', 'Special observations.', registry=None)
    workers = ['1', '2', '3']
    for i, w in enumerate(workers):
        ident[0] = w
        for j, v in enumerate(SPECIALS):
            ga.labels(str(j)).set(v * (i + 1))
        up.inc([0.1, 0.2, 0.3][i])
        down.inc([0.3, 0.2, 0.1][i])
        cinf.labels('inf').inc(math.inf if i == 1 else 1)
        cinf.labels('big').inc(1e16 + i)
        gsum.set([1e16, 1.0, -1e16][i])
        gmin.set([math.nan, 1.0, 2.0][i])
        gmin2.set([1.0, math.nan, 0.5][i])
        gminz.set([-0.0, 0.0, 1.0][i])
        gmax.set([0.0, -0.0, math.nan][i])
        gmaxn.set([math.nan, 5.0, 6.0][i])
    for i, w in enumerate(workers):
        ident[0] = w
        gmr.set([1.0, 2.0, math.nan][i])
        for v in SPECIALS:
            if not math.isnan(v) and v != -math.inf:
                hist.observe(v)
                summ.observe(v)

def nan_counters():
    # NaN in counter-like samples: exposable, but OpenMetrics forbids it.
    new_dir('py_nan_counters', '1')
    c = Counter('counter_nan', 'NaN counter.', ['k'], registry=None)
    h = Histogram('hist_nan', 'NaN observed.', buckets=[1.0], registry=None)
    s = Summary('summary_nan', 'NaN observed.', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        c.labels('nan').inc(math.nan if i == 1 else 2)
        h.observe(math.nan)
        h.observe(0.5)
        s.observe(math.nan)

def never_set():
    new_dir('py_never_set', '1')
    a = Gauge('never_set_mostrecent', 'Never set.', multiprocess_mode='mostrecent', registry=None)
    b = Gauge('never_set_livemostrecent', 'Never set, labeled.', ['x'], multiprocess_mode='livemostrecent', registry=None)
    c = Gauge('partly_set_mostrecent', 'One of two set.', ['x'], multiprocess_mode='mostrecent', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        b.labels('a')
        c.labels('unset')
        if i == 1:
            c.labels('set').set(4)
        a._value.get()

def many_series():
    new_dir('py_many_series', '0')
    c = Counter('many_requests', 'Many series.', ['route', 'code'], registry=None)
    g = Gauge('many_inflight', 'Many gauges.', ['route'], multiprocess_mode='all', registry=None)
    h = Histogram('many_latency_seconds', 'Many histograms.', ['route'], registry=None)
    for i, w in enumerate(['10', '11', '12', '13']):
        ident[0] = w
        for r in range(60):
            c.labels('/r%d' % r, str(200 + r % 3)).inc(r * 0.1 + i)
            g.labels('/r%d' % r).set(r - i)
            h.labels('/r%d' % (r % 7)).observe(r / 30.0)

def raw(d, name, entries):
    m = MmapedDict(os.path.join(d, name))
    for k, v, t in entries:
        m.write_value(k, v, t)
    m.close()

def K(metric, sample, labels, help='h'):
    return mmap_key(metric, sample, list(labels.keys()), list(labels.values()), help)

def raw_quirks():
    d = new_dir('py_raw_quirks', '0')
    raw(d, 'counter_1.db', [
        (K('mixed', 'mixed_total', {}, 'from counter'), 1.0, 0.0),
        (K('dup', 'dup_total', {'a': '1'}), 1.0, 0.0),
        ('["dup","dup_total",{"a":"1"},"h"]', 2.0, 0.0),
        ('["dup", "dup_total", {"b": "2", "a": "1"}, "h"]', 4.0, 0.0),
        ('["dup", "dup_total", {"b": "2", "a": "1", "b": "3"}, "h"]', 8.0, 0.0),
    ])
    raw(d, 'gauge_all_2.db', [(K('mixed', 'mixed', {}, 'from gauge'), 5.0, 0.0)])
    raw(d, 'gauge_all_w_1.db', [(K('pidq', 'pidq', {'pid': 'user'}), 1.0, 0.0), (K('pidq', 'pidq', {}), 1.5, 0.0)])
    raw(d, 'gauge_all_abcd_1.db', [(K('pidq', 'pidq', {'pid': 'user'}), 2.0, 0.0)])
    raw(d, 'gauge_all_x_3.db', [(K('pidq', 'pidq', {'pid': 'other'}), 3.0, 0.0)])
    raw(d, 'gauge_sum_3.db', [(K('modes', 'modes', {'pid': 'p'}), 1.0, 0.0)])
    raw(d, 'gauge_max_4.db', [(K('modes', 'modes', {}), 2.0, 0.0), (K('modes', 'modes', {}), 3.0, 0.0)])
    raw(d, 'histogram_5.db', [
        (K('hraw', 'hraw_count', {}), 9.0, 0.0),
        (K('hraw', 'hraw_sum', {}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '-0.0'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '0.0'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '1e+10'}), 2.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '10000000000.0'}), 3.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '+Inf'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '1.0', 'x': 'b'}), 1.0, 0.0),
        (K('hraw', 'hraw_other', {'le': '2', 'x': 'b'}), 1.0, 0.0),
        (K('hraw', 'hraw_sum', {'x': 'c'}), 4.0, 0.0),
    ])
    raw(d, 'gauge_mostrecent_6.db', [
        (K('mr', 'mr', {'k': 'never'}), 7.0, 0.0),
        (K('mr', 'mr', {'k': 'tie'}), 1.0, 100.0),
        (K('mr', 'mr', {'k': 'newer'}), 1.0, 100.0),
        (K('mrnever', 'mrnever', {}), 3.0, 0.0),
    ])
    raw(d, 'gauge_livemostrecent_7.db', [
        (K('mr', 'mr', {'k': 'tie'}), 2.0, 100.0),
        (K('mr', 'mr', {'k': 'newer'}), 2.0, 100.25),
        (K('mr', 'mr', {'k': 'negative'}), 2.0, -5.0),
    ])
    raw(d, 'counter_8.db', [
        (K('om', 'om_created', {}), 5.0, 0.0),
        (K('om', 'om_total', {}), 1.0, 0.0),
        (K('om', 'om_gsum', {}), 2.0, 0.0),
        (K('om', 'om_gcount', {'a': 'b'}), 3.0, 0.0),
    ])
    raw(d, 'summary_9.db', [(K('s', 's_count', {}, 'help one'), 1.0, 0.0), (K('s', 's_sum', {}, 'help two'), 2.0, 0.0)])
    # A key whose length makes the padding 8 spaces.
    key = K('pad', 'pad_total', {'x': 'y' * 30})
    while (len(key.encode()) + 4) % 8:
        key = K('pad', 'pad_total', {'x': 'y' * (len(key) - 10)})
    raw(d, 'counter_9.db', [(key, 1.0, 0.0)])
    # used == 0: Python treats it as empty.
    with open(os.path.join(d, 'counter_0.db'), 'wb') as f:
        f.write(b'\0' * 65536)

def mixed_python_part():
    new_dir('mixed', '7')
    c = Counter('shared_requests', 'Shared between Python and Rust.', ['route'], registry=None)
    g = Gauge('shared_inflight', 'Shared gauge.', multiprocess_mode='livesum', registry=None)
    ga = Gauge('shared_all', 'Shared all gauge.', ['k'], registry=None)
    h = Histogram('shared_latency_seconds', 'Shared histogram.', buckets=[0.1, 1.0], registry=None)
    c.labels('/a').inc(0.1)
    g.inc(2)
    ga.labels('v').set(1.5)
    h.observe(0.05)
    h.observe(3)

for f in (reference, hostile, utf8_names, colon_names, floats, nan_counters, never_set, many_series, raw_quirks,
          mixed_python_part):
    f()
os.makedirs(os.path.join(root, 'empty'))
