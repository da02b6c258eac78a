"""Writes a seed corpus for the `read_db` fuzz target into the directory given as
argv[1]: `.db` files written by prometheus_client's own MmapedDict (so the seeds are
what Python really writes), cut to their `used` length (and once with trailing zeros),
each prefixed with the target's two selector bytes (file kind, split).

Run it with the test venv's python (tests/support creates it):
    target/tmp/py-prometheus_client-0.26.0/bin/python fuzz/make_seeds.py fuzz/corpus/read_db
"""
import os
import struct
import sys
import tempfile

from prometheus_client.mmap_dict import MmapedDict, mmap_key as python_mmap_key

# Index of each kind in the target's NAMES.
KINDS = {
    'counter': 0, 'gauge_all': 1, 'gauge_liveall': 2, 'gauge_min': 3, 'gauge_livemin': 4,
    'gauge_max': 5, 'gauge_livemax': 6, 'gauge_sum': 7, 'gauge_livesum': 8,
    'gauge_mostrecent': 9, 'gauge_livemostrecent': 10, 'histogram': 11, 'summary': 12,
}


def mmap_key(metric, sample, labels, help_text):
    return python_mmap_key(metric, sample, list(labels), list(labels.values()), help_text)


HOSTILE = 'ä€😀"\\\n\t\x01\x7f/'


def entries(kind):
    if kind == 'counter':
        return [
            (mmap_key('req', 'req_total', {'code': '200', 'method': 'get'}, 'Requests.'), 1.0, 0.0),
            (mmap_key('req', 'req_total', {'code': '500', 'method': 'post'}, 'Requests.'), 2.5, 0.0),
            (mmap_key('req', 'req_created', {'code': '200', 'method': 'get'}, 'Requests.'), 1.7e9, 0.0),
            (mmap_key('odd', 'odd_total', {'l': HOSTILE}, 'H' + HOSTILE), 3.0, 0.0),
        ]
    if kind == 'histogram':
        out = [(mmap_key('h', 'h_sum', {'route': '/a'}, 'H.'), 1.5, 0.0)]
        for le in ['0.005', '0.5', '1.0', '+Inf']:
            out.append((mmap_key('h', 'h_bucket', {'le': le, 'route': '/a'}, 'H.'), 1.0, 0.0))
        return out
    if kind == 'summary':
        return [
            (mmap_key('s', 's_count', {}, 'S.'), 4.0, 0.0),
            (mmap_key('s', 's_sum', {}, 'S.'), 2.25, 0.0),
        ]
    # gauges
    return [
        (mmap_key('g', 'g', {}, 'G.'), -1.5, 1.7e9),
        (mmap_key('g', 'g', {'pid': '7', 'x': HOSTILE}, 'G.'), 8.0, 1.7e9 + 1),
    ]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind, index in KINDS.items():
            path = os.path.join(tmp, kind + '_1.db')
            d = MmapedDict(path)
            for key, value, timestamp in entries(kind):
                d.write_value(key, value, timestamp)
            d.close()
            with open(path, 'rb') as f:
                data = f.read()
            used = struct.unpack_from('<i', data, 0)[0]
            for split in (0, 128):
                for extra in (0, 64):
                    name = '%s-split%d-extra%d' % (kind, split, extra)
                    with open(os.path.join(out, name), 'wb') as f:
                        f.write(bytes([index, split]) + data[:used + extra])


main()
