"""prometheus_client's multiprocess value class, written through the Rust writer.

:func:`MultiProcessValue` has the signature and behaviour of
``prometheus_client.values.MultiProcessValue``: it returns the class that
prometheus_client's metrics instantiate for every sample. Its objects write the same
files (``counter_ID.db``, ``gauge_livesum_ID.db``, ...) in the same format, so stock
collectors read them with the same totals, but through the ``prometheus-multiproc``
crate's writer:

* ``inc`` is one atomic add on the shared mapping: no Python lock, no ``getpid()``
  per call (after ``fork()`` the writer moves every value into the child's own files
  at its first write), no ``struct.pack``;
* every writing process holds a liveness lock (``writer_ID.lock``) that the kernel
  drops when it dies, however it dies: its ``live*`` gauges leave the next scrape of
  this package's collector with no ``child_exit`` hook, and its files become
  compactable (:func:`prometheus_multiproc.compact`);
* with ``worker_id="auto"`` (see :func:`install`) a process writes under the lowest
  free slot ``worker-N`` instead of its pid, so that a recycled worker continues its
  predecessor's files and a directory holds the files of at most as many slots as
  were ever alive at once.

:func:`install` makes it prometheus_client's value class for every metric created
afterwards, and gives prometheus_client's ``labels()`` a fast path for children that
already exist (:mod:`prometheus_multiproc._labels`).
"""

import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from . import _labels, _native
from ._dir import resolve_dir

__all__ = ["MultiProcessValue", "install"]


class _Writers:
    """The core writers of one factory, created at its first value (when the metrics
    directory is read, as prometheus_client reads it): one per worker ID."""

    def __init__(self, worker_id: Optional[str]) -> None:
        self._worker_id = worker_id
        self._writers: Dict[Optional[str], "_native.Writer"] = {}
        self._lock = threading.Lock()

    def get(self, worker_id: Optional[str] = None) -> "_native.Writer":
        if worker_id is None:
            worker_id = self._worker_id
        writer = self._writers.get(worker_id)
        if writer is None:
            with self._lock:
                writer = self._writers.get(worker_id)
                if writer is None:
                    writer = _native.Writer(resolve_dir(), worker_id)
                    self._writers[worker_id] = writer
        return writer

    def after_fork(self) -> None:
        for writer in list(self._writers.values()):
            writer.after_fork()


def _params(
    typ: str,
    metric_name: str,
    name: str,
    labelnames: Any,
    labelvalues: Any,
    help_text: str,
    multiprocess_mode: str = "",
    **kwargs: Any,
) -> Tuple[Any, ...]:
    """The arguments prometheus_client passes its value class (the signature of
    ``prometheus_client.values.MultiProcessValue``'s class), as the native value takes
    them; other keyword arguments are ignored, as prometheus_client's class ignores them."""
    return (typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode)


def _native_class(worker_id: Optional[str]) -> type:
    """A value class whose objects are native values of one writer (under
    ``worker_id``: ``None`` for ``$PROMETHEUS_MULTIPROC_WORKER_ID`` or the pid)."""
    writers = _Writers(worker_id)

    class MmapedValue(_native.Value):
        """A sample's value, written through the Rust writer (see
        :mod:`prometheus_multiproc.values`)."""

        _multiprocess = True
        _writers = writers
        __slots__ = ()

        def __new__(cls, *args: Any, **kwargs: Any) -> "MmapedValue":
            return _native.Value.__new__(cls, writers.get(), *_params(*args, **kwargs))

    return MmapedValue


def _identifier_class(process_identifier: Callable[[], Any]) -> type:
    """A value class honouring a custom ``process_identifier`` as prometheus_client
    does: it is called at every operation, and its value (as ``str``) is the worker ID
    the files are named after; when it changes, the value moves to that ID's files,
    continuing what they hold."""
    writers = _Writers(None)

    class MmapedValue:
        """A sample's value, written through the Rust writer under the ID that
        ``process_identifier`` returns (see :mod:`prometheus_multiproc.values`)."""

        _multiprocess = True
        _writers = writers
        __slots__ = ("_params", "_ident", "_value")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._params = _params(*args, **kwargs)
            self._bind(process_identifier())

        def _bind(self, ident: Any) -> None:
            self._ident = ident
            self._value = _native.Value(writers.get(str(ident)), *self._params)

        def _current(self) -> "_native.Value":
            ident = process_identifier()
            if ident != self._ident:
                self._bind(ident)
            return self._value

        def inc(self, amount: float) -> None:
            self._current().inc(amount)

        def set(self, value: float, timestamp: Optional[float] = None) -> None:
            self._current().set(value, timestamp)

        def get(self) -> float:
            return self._current().get()

        def set_exemplar(self, exemplar: Any) -> None:
            return None

        def get_exemplar(self) -> None:
            return None

    return MmapedValue


def MultiProcessValue(process_identifier: Callable[[], Any] = os.getpid) -> type:
    """Return a value class for prometheus_client's metrics that writes through the
    Rust writer (a drop-in for ``prometheus_client.values.MultiProcessValue``).

    With the default ``process_identifier`` (``os.getpid``, which is never called per
    operation) the files are named after this process's worker ID: the pid, or
    ``$PROMETHEUS_MULTIPROC_WORKER_ID`` (``auto``, ``auto:PREFIX``, or an ID). A custom
    ``process_identifier`` is called at every operation, as prometheus_client calls
    it, and its value (as ``str``, which must be 1 to 64 of ``[A-Za-z0-9.-]``) names
    the files; several identifiers in one process write separate files, as in
    prometheus_client. A fork child whose custom identifier returns its parent's
    value writes under its pid instead (the parent still holds that ID).

    The directory is ``$PROMETHEUS_MULTIPROC_DIR``, read when the first value is
    created; ``ValueError`` is raised then when it is unset or not a directory.
    Exemplars are ignored, as in prometheus_client's multiprocess mode.
    """
    if process_identifier is os.getpid:
        return _native_class(None)
    return _identifier_class(process_identifier)


def install(worker_id: Optional[str] = None, *, fast_labels: bool = True) -> bool:
    """Make every prometheus_client metric created from now on write through the Rust
    writer: sets ``prometheus_client.values.ValueClass``; and, unless ``fast_labels`` is
    false, patches prometheus_client's ``labels()`` with a fast path for children that
    already exist.

    Call it before the modules that declare metrics are imported (metrics created
    earlier keep their value class): first thing in a gunicorn config file, a uWSGI
    entry module, or the module uvicorn imports. ``worker_id`` is ``None`` (the pid,
    or ``$PROMETHEUS_MULTIPROC_WORKER_ID``), ``"auto"`` or ``"auto:PREFIX"`` (automatic
    slots ``worker-N`` / ``PREFIX-N``, claimed by each worker at its first write, so
    that a pre-fork master that never writes claims none), or a fixed worker ID.

    ``fast_labels`` (default ``True``) replaces ``MetricWrapperBase.labels`` (the
    ``labels()`` of every prometheus_client metric class, metrics created earlier
    included) with a wrapper around it: a call with values passed positionally, each
    exactly a ``str``, for a child that already exists returns that child with one
    dictionary lookup, without prometheus_client's conversions and lock; every other
    call (keyword arguments, other types, a new labelset, every error) runs
    prometheus_client's own method. The children and errors are prometheus_client's;
    see :mod:`prometheus_multiproc._labels` for how it orders against ``remove()`` and
    ``clear()``. Applied only with prometheus_client 0.26 and when ``labels`` is still
    prometheus_client's own. ``install(fast_labels=False)`` leaves ``labels()`` alone,
    and puts prometheus_client's own back if an earlier ``install()`` patched it.

    Returns ``True`` when installed; ``False``, changing nothing, when neither
    ``PROMETHEUS_MULTIPROC_DIR`` nor ``prometheus_multiproc_dir`` is set (then
    prometheus_client keeps its single-process values, as it does without a directory).

    :raises ValueError: when ``worker_id`` is not a valid worker ID.
    """
    if not (os.environ.get(_native.DIR_ENV) or os.environ.get(_native.DIR_ENV_DEPRECATED)):
        return False
    if worker_id is not None:
        _check_worker_id(worker_id)
    from prometheus_client import values

    values.ValueClass = _native_class(worker_id)
    _labels.enable(fast_labels)
    return True


def after_fork() -> None:
    """Move every installed value into this process's own files now (claiming an
    automatic slot) instead of at the first write: optional, for a ``post_fork`` hook.
    Does nothing when :func:`install` was not called."""
    from prometheus_client import values

    writers = getattr(values.ValueClass, "_writers", None)
    if isinstance(writers, _Writers):
        writers.after_fork()


def _check_worker_id(worker_id: str) -> None:
    _native.check_worker_id(worker_id)
