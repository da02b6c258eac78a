"""Type stubs of the native module (PyO3 over the prometheus-multiproc crate)."""

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from prometheus_client.metrics_core import Metric

_Path = Union[str, "os.PathLike[str]"]

DIR_ENV: str
DIR_ENV_DEPRECATED: str
WORKER_ID_ENV: str
SKIPPED_FILES_METRIC: str

class Collector:
    """A merged directory, kept between scrapes (the core's ``Collector``)."""

    def __init__(self, path: _Path, self_metrics: bool = False) -> None:
        """A collector over the directory ``path``.

        :raises OSError: when ``path`` is not an existing directory.
        """
    @property
    def path(self) -> Path:
        """The directory this collector reads."""
    def collect(self) -> Tuple[List[Metric], List[Tuple[Path, str, str]]]:
        """Merge the directory: ``(families, skipped)``, where ``skipped`` holds
        ``(path, reason, message)`` per skipped file.

        :raises OSError: when the directory cannot be listed.
        """
    def expose(self, openmetrics: bool = False) -> bytes:
        """The merged directory as Prometheus text (or OpenMetrics 1.0.0).

        :raises OSError: when the directory cannot be listed.
        """
    def render(
        self, accept: Optional[str] = None, accept_encoding: Optional[str] = None
    ) -> Tuple[bytes, str, Optional[str]]:
        """``(body, content_type, content_encoding)`` negotiated from the headers.

        :raises OSError: when the directory cannot be listed.
        """

class Writer:
    """The write side over one directory (the core's ``Registry``)."""

    def __init__(self, path: _Path, worker_id: Optional[str] = None) -> None:
        """A writer; ``worker_id`` is ``auto``, ``auto:PREFIX``, an ID, or ``None``
        (``$PROMETHEUS_MULTIPROC_WORKER_ID``, else the pid).

        :raises ValueError: when the worker ID is invalid or the directory unusable.
        """
    @property
    def worker_id(self) -> str:
        """The worker ID written under (``auto:PREFIX`` until a slot is claimed)."""
    @property
    def path(self) -> Path:
        """The metrics directory."""
    def after_fork(self) -> None:
        """Move every value into this process's files now (claiming a slot).

        :raises ValueError: when the worker ID cannot be taken.
        """

class Value:
    """One sample's value in a writer's files (the core's ``RawValue``)."""

    def __init__(
        self,
        writer: Writer,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Sequence[str],
        labelvalues: Sequence[str],
        help_text: str,
        multiprocess_mode: str = "",
    ) -> None:
        """The entry of one sample, created with value 0 when new.

        :raises ValueError: for an unknown type or gauge mode.
        :raises OSError: when the file cannot be opened or grown.
        """
    def inc(self, amount: float) -> None:
        """Add ``amount`` (one atomic add on the shared mapping)."""
    def set(self, value: float, timestamp: Optional[float] = None) -> None:
        """Store ``value`` and ``timestamp`` (``None``: 0)."""
    def get(self) -> float:
        """This process's value."""
    def set_exemplar(self, exemplar: object) -> None:
        """Ignored, as in prometheus_client's multiprocess mode."""
    def get_exemplar(self) -> None:
        """Always ``None``."""

def check_worker_id(worker_id: str) -> None:
    """:raises ValueError: unless ``worker_id`` is ``auto``, ``auto:PREFIX`` or an ID."""

class Server:
    """The core's ``/metrics`` endpoint, running on its own thread."""

    @property
    def url(self) -> str:
        """``http://ADDR:PORT/metrics`` or ``https://…``."""
    @property
    def port(self) -> int:
        """The port bound."""
    @property
    def host(self) -> str:
        """The address bound."""
    def shutdown(self) -> None:
        """Stop serving; calling it again does nothing."""

def serve(
    collector: Collector,
    port: int,
    addr: str,
    basic_auth: Optional[Tuple[str, str]] = None,
    certfile: Optional[_Path] = None,
    keyfile: Optional[_Path] = None,
    max_connections: int = 64,
) -> Server:
    """Serve ``collector`` at ``http(s)://addr:port/metrics`` on a thread of its own.

    :raises ValueError: bad address, credentials or TLS arguments.
    :raises OSError: the address cannot be bound or the TLS files read.
    """

def mark_process_dead(path: _Path, pid: str) -> int:
    """Remove the live-mode gauge files of worker ``pid``; return how many."""

def compact(path: _Path) -> Dict[str, list]:
    """Fold dead writers' files into archives; return what was done."""

def clear(path: _Path) -> Dict[str, List[str]]:
    """Remove a previous run's files; return ``{"removed": [...], "left": [...]}``."""

def cli_main(argv: List[str]) -> int:
    """Run the ``prometheus-multiproc`` command line; return the exit status."""
