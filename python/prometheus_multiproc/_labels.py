"""A fast path for prometheus_client's ``labels()``, patched in by :func:`install`.

prometheus_client 0.26's ``MetricWrapperBase.labels`` converts every value with
``str()`` through a generator, checks the call, takes the metric's lock and looks the
child up: about 1 µs, most of ``counter.labels("GET", "200").inc()`` once ``inc`` goes
through the Rust writer. :func:`enable` wraps it (once, on the class, so every
``Counter``, ``Gauge``, ``Histogram``, ``Summary``, ``Info`` and ``Enum`` gets it) with
a path for the common call that returns the same child without the conversions and the
lock:

* values passed positionally, no keyword arguments, every value exactly a ``str``
  (``type(v) is str``: ``str(v)`` is ``v`` itself, so the key is the tuple of the
  arguments; a ``str`` subclass or an ``Enum`` mixing in ``str`` may convert to another
  string, and takes the original path);
* on a labeled metric's parent (label names, no label values);
* whose child for that tuple already exists: one ``dict.get`` on the metric's
  ``_metrics``.

Every other call, and every miss, goes to prometheus_client's own method, unchanged:
its errors (no label names, chained calls, both kinds of arguments, wrong names or
count) and the creation of children stay prometheus_client's. A hit returns what the
original would return; the original only adds taking ``self._lock``, which orders the
lookup against ``remove()``, ``remove_by_labels()``, ``clear()`` and the creation of
other children.

Without the lock, a lookup racing one of those sees the dictionary either before or
after it (``dict.get`` is atomic under the GIL and thread-safe on free-threaded builds;
``clear()`` replaces the dictionary, and a lookup that already read the old one
returns the child it held): the result of a call made just before or just after it,
which is all the lock guarantees too, since a child returned by the original can be
removed the moment the lock is released. A removed labelset is never served from the
fast path once the removal has returned: the next call misses and the original creates
a new child.

Applied only to prometheus_client 0.26 (whose method the fast path mirrors) and only
when ``MetricWrapperBase.labels`` is still prometheus_client's own function (another
wrapper is never bypassed).
"""

import functools
from typing import Any, Callable, Optional

_MARK = "_prometheus_multiproc_fast_labels"
_SUPPORTED = ("0", "26")


def _base() -> Any:
    from prometheus_client.metrics import MetricWrapperBase

    return MetricWrapperBase


def _supported_version() -> bool:
    try:
        from importlib.metadata import version

        return tuple(version("prometheus_client").split(".")[:2]) == _SUPPORTED
    except Exception:  # no distribution metadata: an unknown version
        return False


def _fast(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def labels(self: Any, *labelvalues: Any, **labelkwargs: Any) -> Any:
        if not labelkwargs and self._labelnames and not self._labelvalues:
            for value in labelvalues:
                if type(value) is not str:
                    break
            else:
                try:
                    child = self._metrics.get(labelvalues)
                except AttributeError:  # not set up as a parent: the original decides
                    child = None
                if child is not None:
                    return child
        return original(self, *labelvalues, **labelkwargs)

    setattr(labels, _MARK, True)
    return labels


def installed() -> bool:
    """Whether ``MetricWrapperBase.labels`` is the fast path now."""
    return getattr(_base().labels, _MARK, False)


def enable(on: bool) -> bool:
    """Wraps ``MetricWrapperBase.labels`` with the fast path (``on``), or puts
    prometheus_client's own method back (``not on``). Idempotent. Returns whether the
    fast path is in place afterwards: ``False`` also when prometheus_client is not
    0.26 or its ``labels`` was replaced by someone else (then left alone)."""
    base = _base()
    current = base.__dict__.get("labels")
    ours = getattr(current, _MARK, False)
    if not on:
        if ours:
            base.labels = current.__wrapped__
        return False
    if ours:
        return True
    original: Optional[Callable[..., Any]] = current
    if (
        original is None
        or hasattr(original, "__wrapped__")
        or getattr(original, "__module__", None) != "prometheus_client.metrics"
        or getattr(original, "__qualname__", None) != "MetricWrapperBase.labels"
        or not _supported_version()
    ):
        return False
    base.labels = _fast(original)
    return True
