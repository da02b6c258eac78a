"""Fast, never-failing scrapes of prometheus_client's multiprocess directories.

The metrics directory (``$PROMETHEUS_MULTIPROC_DIR``) that prometheus_client's workers
write is read and merged by the Rust collector of the ``prometheus-multiproc`` crate:
files in sorted name order, by prometheus_client 0.26's rules, to the same bytes as its
``generate_latest``. A file that cannot be used (empty, truncated, corrupt, not a
regular file, ...) is skipped and logged as a warning of the ``prometheus_multiproc``
logger; only a directory that cannot be listed raises.

Drop-ins, with prometheus_client's names, signatures, environment variables and
errors:

* :class:`MultiProcessCollector` and :func:`mark_process_dead` (as in
  ``prometheus_client.multiprocess``; also importable from
  ``prometheus_multiproc.multiprocess``).

Exposition without Python objects, straight from the Rust encoder:

* :func:`generate_latest`, :func:`render`, :func:`make_wsgi_app`,
  :func:`make_asgi_app`, :func:`start_http_server`.

The write side, for prometheus_client's own metrics:

* :func:`install` (``prometheus_client.values.ValueClass`` becomes
  :func:`MultiProcessValue`'s class: every metric created afterwards writes through the
  Rust writer, with liveness locks and, with ``worker_id="auto"``, bounded slots; it
  also patches prometheus_client's ``labels()`` with a fast path for existing
  children, unless ``fast_labels=False``), :func:`after_fork`; also importable from
  ``prometheus_multiproc.values``.

Operations: :func:`compact`, :func:`clear`, and ``python -m prometheus_multiproc``
(the ``prometheus-multiproc`` command line).
"""

from ._dir import resolve_dir
from ._exposition import (
    CONTENT_TYPE_LATEST,
    CONTENT_TYPE_PLAIN_0_0_4,
    MetricsServer,
    generate_latest,
    make_asgi_app,
    make_wsgi_app,
    render,
    start_http_server,
)
from .multiprocess import MultiProcessCollector, mark_process_dead
from ._ops import clear, compact
from .values import MultiProcessValue, after_fork, install

__all__ = [
    "CONTENT_TYPE_LATEST",
    "CONTENT_TYPE_PLAIN_0_0_4",
    "MetricsServer",
    "MultiProcessCollector",
    "MultiProcessValue",
    "after_fork",
    "clear",
    "compact",
    "generate_latest",
    "install",
    "make_asgi_app",
    "make_wsgi_app",
    "mark_process_dead",
    "render",
    "resolve_dir",
    "start_http_server",
]
