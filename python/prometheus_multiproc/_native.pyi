"""Type stubs of the native module (PyO3 over the prometheus-multiproc crate)."""

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from prometheus_client.metrics_core import Metric

_Path = Union[str, "os.PathLike[str]"]

DIR_ENV: str
DIR_ENV_DEPRECATED: str
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
