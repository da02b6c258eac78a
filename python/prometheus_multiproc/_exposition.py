"""Exposition straight from the Rust encoder: no Python ``Metric`` objects are built.

The bytes equal prometheus_client 0.26's ``generate_latest`` (text) and
``openmetrics.exposition.generate_latest`` over a ``MultiProcessCollector`` merging the
same files in sorted name order.
"""

import os
import threading
from typing import Callable, Dict, List, Optional, Tuple

from . import _native
from ._dir import PathLike, resolve_dir

#: The content type of the text format without a version request.
CONTENT_TYPE_PLAIN_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
#: prometheus_client's name for the same content type.
CONTENT_TYPE_LATEST = CONTENT_TYPE_PLAIN_0_0_4

_collectors: Dict[Tuple[str, str, bool], "_native.Collector"] = {}
_collectors_lock = threading.Lock()


def _collector(path: Optional[PathLike], self_metrics: bool = False) -> "_native.Collector":
    """The collector of a directory, created on first use and kept for the life of the
    process (until a fork), so that repeat scrapes read only what changed, whichever
    ``generate_latest``, app, server or ``MultiProcessCollector`` asks."""
    directory = resolve_dir(path)
    key = (directory, os.path.realpath(directory), self_metrics)
    with _collectors_lock:
        collector = _collectors.get(key)
        if collector is None:
            collector = _collectors[key] = _native.Collector(directory, self_metrics)
        return collector


def generate_latest(path: Optional[PathLike] = None, openmetrics: bool = False) -> bytes:
    """The merged directory as Prometheus text format 0.0.4 (or OpenMetrics 1.0.0 when
    ``openmetrics``), byte for byte what prometheus_client's ``generate_latest``
    returns for a ``MultiProcessCollector`` on a registry of its own.

    :param path: the metrics directory (default ``$PROMETHEUS_MULTIPROC_DIR``).
    :raises ValueError: no directory (see :func:`resolve_dir`).
    :raises OSError: when the directory cannot be listed.
    """
    return _collector(path).expose(openmetrics)


def render(
    accept: Optional[str] = None, accept_encoding: Optional[str] = None, path: Optional[PathLike] = None
) -> Tuple[bytes, str, List[Tuple[str, str]]]:
    """Negotiate with an HTTP request's ``Accept`` and ``Accept-Encoding`` headers and
    render the merged directory: ``(body, content_type, headers)``.

    ``headers`` is ``[("Content-Type", content_type)]``, plus
    ``("Content-Encoding", "gzip")`` when the body is gzipped (``Accept-Encoding``
    lists ``gzip`` with a non-zero weight). OpenMetrics is chosen as prometheus_client
    chooses it, except that the highest ``q`` wins (see the crate's ``expose`` docs).

    :raises ValueError: no directory (see :func:`resolve_dir`).
    :raises OSError: when the directory cannot be listed.
    """
    body, content_type, encoding = _collector(path).render(accept, accept_encoding)
    headers = [("Content-Type", content_type)]
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    return body, content_type, headers


def _respond(method: str, path_info: str, accept, accept_encoding, collector, disable_compression: bool):
    """Status, headers and body, as prometheus_client's apps answer, plus HEAD."""
    if method == "OPTIONS":
        return "200 OK", [("Allow", "OPTIONS,GET,HEAD")], b""
    if method not in ("GET", "HEAD"):
        status = "405 Method Not Allowed"
        body = "# HTTP {}: {}; use OPTIONS, GET or HEAD\n".format(status, method).encode()
        return status, [("Allow", "OPTIONS,GET,HEAD")], body
    if path_info == "/favicon.ico":
        return "200 OK", [], b""
    body, content_type, encoding = collector.render(accept, None if disable_compression else accept_encoding)
    headers = [("Content-Type", content_type)]
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    if method == "HEAD":
        headers.append(("Content-Length", str(len(body))))
        body = b""
    return "200 OK", headers, body


def make_wsgi_app(path: Optional[PathLike] = None, disable_compression: bool = False) -> Callable:
    """A WSGI app serving the merged directory, as prometheus_client's
    ``make_wsgi_app(registry)`` does over a ``MultiProcessCollector``.

    Any path is served (``/favicon.ico`` gets an empty 200), with content negotiation
    and gzip; ``OPTIONS`` answers the allowed methods; ``HEAD`` answers the headers of
    ``GET`` (prometheus_client answers 405); other methods get 405. The ``name[]``
    query filter is not supported (the whole directory is served).

    :param path: the metrics directory (default ``$PROMETHEUS_MULTIPROC_DIR``), resolved
        now: an unset or missing directory raises ``ValueError`` here.
    """
    collector = _collector(path)

    def prometheus_app(environ, start_response):
        status, headers, body = _respond(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO", ""),
            environ.get("HTTP_ACCEPT"),
            environ.get("HTTP_ACCEPT_ENCODING"),
            collector,
            disable_compression,
        )
        start_response(status, headers)
        return [body]

    return prometheus_app


def make_asgi_app(path: Optional[PathLike] = None, disable_compression: bool = False) -> Callable:
    """An ASGI app serving the merged directory, as prometheus_client's
    ``make_asgi_app(registry)`` does over a ``MultiProcessCollector``, with the same
    methods as :func:`make_wsgi_app`.

    The scrape runs on the event loop's thread with the GIL released, as
    prometheus_client's runs on it (with the GIL held).

    :param path: the metrics directory (default ``$PROMETHEUS_MULTIPROC_DIR``), resolved
        now: an unset or missing directory raises ``ValueError`` here.
    """
    collector = _collector(path)

    async def prometheus_app(scope, receive, send):
        assert scope.get("type") == "http"
        headers = scope.get("headers") or []
        accept = ",".join(v.decode("latin-1") for k, v in headers if k.lower() == b"accept")
        accept_encoding = ",".join(v.decode("latin-1") for k, v in headers if k.lower() == b"accept-encoding")
        status, out_headers, body = _respond(
            scope.get("method", "GET"), scope.get("path", ""), accept, accept_encoding, collector, disable_compression
        )
        payload = await receive()
        if payload.get("type") == "http.request":
            await send(
                {
                    "type": "http.response.start",
                    "status": int(status.split(" ")[0]),
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers],
                }
            )
            await send({"type": "http.response.body", "body": body})

    return prometheus_app


class MetricsServer:
    """A running ``/metrics`` endpoint (the core crate's, on a thread of its own).

    It runs until :meth:`shutdown` or the end of the process: the module keeps a
    reference, so ``start_http_server(8000)`` without keeping the result keeps serving,
    as prometheus_client's daemon thread does.
    """

    def __init__(self, native: "_native.Server") -> None:
        self._native = native

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` (``https`` with TLS)."""
        return self._native.url

    @property
    def port(self) -> int:
        """The port bound (the real one when 0 was asked for)."""
        return self._native.port

    @property
    def host(self) -> str:
        """The address bound."""
        return self._native.host

    def shutdown(self) -> None:
        """Stop serving (open connections finish their response, within 5 s)."""
        self._native.shutdown()
        with _servers_lock:
            if self in _servers:
                _servers.remove(self)

    def __repr__(self) -> str:
        return "MetricsServer({!r})".format(self.url)


_servers: List[MetricsServer] = []
_servers_lock = threading.Lock()


def start_http_server(
    port: int,
    addr: str = "0.0.0.0",
    path: Optional[PathLike] = None,
    *,
    certfile: Optional[str] = None,
    keyfile: Optional[str] = None,
    basic_auth: Optional[Tuple[str, str]] = None,
    max_connections: int = 64,
) -> MetricsServer:
    """Serve the merged directory at ``http://addr:port/metrics`` from a thread of the
    core crate (hyper on a small tokio runtime), as prometheus_client's
    ``start_http_server`` does from a daemon thread.

    Differences: only ``/metrics`` is served (other paths get 404); ``HEAD`` is
    answered; TLS takes ``certfile`` and ``keyfile`` (PEM; no client certificates);
    ``basic_auth=(user, password)`` requires HTTP basic authentication; at most
    ``max_connections`` connections are served at once; a :class:`MetricsServer` is
    returned instead of ``(server, thread)``.

    :raises ValueError: no directory (see :func:`resolve_dir`), an address that does
        not resolve, ``certfile`` without ``keyfile`` or the reverse, or invalid
        credentials.
    :raises OSError: when the address cannot be bound or the TLS files read.
    """
    native = _native.serve(_collector(path), port, addr, basic_auth, certfile, keyfile, max_connections)
    server = MetricsServer(native)
    with _servers_lock:
        _servers.append(server)
    return server


def _after_fork_in_child() -> None:
    """A fork child starts with its own collectors and no servers: a copy of a
    collector may hold a lock a parent's thread held at the fork, and a server's
    threads are not in the child (its objects are forgotten, never joined)."""
    global _collectors_lock, _servers_lock
    _collectors_lock = threading.Lock()
    _servers_lock = threading.Lock()
    _collectors.clear()
    del _servers[:]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
