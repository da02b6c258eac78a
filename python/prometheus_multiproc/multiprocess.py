"""Drop-ins for ``prometheus_client.multiprocess``: swap the import line, nothing else.

``MultiProcessCollector`` merges with the Rust collector, which keeps its state between
scrapes (a repeat scrape reads only what changed) and merges files in sorted name
order, so its samples equal prometheus_client 0.26's over the same files in that order.
Every ``MultiProcessCollector`` of a directory in a process shares one Rust collector
(as ``generate_latest(path)`` and the apps do), so the pattern prometheus_client's docs
show, a new registry and collector in every request handler, scrapes warm too. That
collector lives as long as the process (a fork child makes its own): it keeps up to
16,384 of the directory's files mapped, and what it learned of each file.
What differs on purpose:

* a file that cannot be used is skipped and logged (logger ``prometheus_multiproc``)
  instead of failing ``collect()``;
* the static ``MultiProcessCollector.merge(files, accumulate)`` is not provided;
* gauge ``Metric`` objects carry no ``_multiprocess_mode`` attribute.
"""

import logging
import os
from typing import Iterable, List, Optional, Tuple

from prometheus_client.metrics_core import Metric

from . import _native
from ._dir import PathLike, resolve_dir
from ._exposition import _collector

__all__ = ["MultiProcessCollector", "mark_process_dead"]

logger = logging.getLogger("prometheus_multiproc")


class MultiProcessCollector:
    """Collector for the files of multi-process mode, merged in Rust.

    Same constructor as prometheus_client's: ``path`` defaults to
    ``$PROMETHEUS_MULTIPROC_DIR`` (or the deprecated ``$prometheus_multiproc_dir``, with
    a ``DeprecationWarning``), and the collector registers itself on ``registry`` unless
    it is ``None``.

    :param registry: a ``prometheus_client.CollectorRegistry``, or ``None``.
    :param path: the metrics directory.
    :param self_metrics: also expose ``prometheus_multiproc_skipped_files``, a gauge of
        the files the last scrape skipped, by reason (off by default, so that the
        output is exactly prometheus_client's).
    :raises ValueError: ``env PROMETHEUS_MULTIPROC_DIR is not set or not a directory``.
    """

    def __init__(self, registry, path: Optional[PathLike] = None, *, self_metrics: bool = False) -> None:
        path = resolve_dir(path)
        self._path = path
        # Shared by every collector of this directory in the process (see the module
        # docs); looked up again in a fork child, which makes its own.
        self._self_metrics = self_metrics
        self._pid = os.getpid()
        self._native = _collector(path, self_metrics)
        #: ``(path, reason, message)`` for each file the last ``collect()`` skipped.
        self.last_skipped: List[Tuple[str, str, str]] = []
        if registry:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        """Merge the directory; return prometheus_client ``Metric`` objects.

        Never fails on a file: those skipped are logged and listed in
        :attr:`last_skipped`.

        :raises OSError: only when the directory itself cannot be listed.
        """
        if self._pid != os.getpid():
            # Created before a fork: the parent's collector (and its lock) is not ours.
            self._pid = os.getpid()
            self._native = _collector(self._path, self._self_metrics)
        families, skipped = self._native.collect()
        self.last_skipped = [(os.fspath(p), reason, message) for p, reason, message in skipped]
        return families


def mark_process_dead(pid, path: Optional[PathLike] = None) -> None:
    """Do bookkeeping for when one process dies in a multi-process setup.

    Removes the live-mode gauge files (``gauge_live*_PID.db``) of the dead process
    ``pid``, as prometheus_client's function does. ``path`` defaults to
    ``$PROMETHEUS_MULTIPROC_DIR``, then ``$prometheus_multiproc_dir`` (no warning, as in
    prometheus_client). A missing directory is not an error (nothing to remove).

    :raises TypeError: when no path is given and neither variable is set (as
        prometheus_client raises).
    :raises OSError: when a file cannot be removed.
    """
    if path is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", os.environ.get("prometheus_multiproc_dir"))
    path = os.fspath(path)  # None: TypeError, as os.path.join(None, ...) in prometheus_client
    if not os.path.isdir(path):
        return
    _native.mark_process_dead(path, str(pid))
