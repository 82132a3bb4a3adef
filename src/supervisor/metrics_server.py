"""``--metrics-port``: ``/metrics`` and ``/health`` over HTTP, on a background thread.

The server asks its ``snapshot`` function for a fresh ``Snapshot`` on every
request, so it holds no state of its own: ``/metrics`` is ``metrics.render`` of
it, ``/health`` is 200 while it is healthy and 503 once the last cycle hit an
internal error. Whatever a client does (a bad path, a dropped connection, a
snapshot function that raises) is answered or dropped without a line on
stderr and without stopping the server.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from supervisor.errors import MtestError
from supervisor.metrics import CONTENT_TYPE, Snapshot, render

SnapshotFn = Callable[[], Snapshot]
REQUEST_TIMEOUT_S = 30.0
"""A client that sends nothing for this long is dropped (it holds a thread)."""
_TEXT = "text/plain; charset=utf-8"


class MetricsServer:
    """An HTTP server for ``/metrics`` and ``/health``, bound when it is made."""

    def __init__(self, host: str, port: int, snapshot: SnapshotFn) -> None:
        self._host = host
        try:
            family = _family(host, port)
            self._server = _Server((host, port), family, snapshot)
        except OSError as exc:
            raise _bind_error(host, port, exc) from None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port (the one the system picked for port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The scrape address, ``http://HOST:PORT/metrics``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Serve on a daemon thread until ``close``."""
        with self._lock:
            if self._closed or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.5},
                name="mtest-metrics",
                daemon=True,
            )
            self._thread.start()

    def close(self) -> None:
        """Stop serving, close the socket and join the thread; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._server.shutdown()  # waits for serve_forever: only when it was started
            thread.join()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _family(host: str, port: int) -> socket.AddressFamily:
    """IPv4 or IPv6, as ``host`` resolves (``::1`` binds an IPv6 socket)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]


def _bind_error(host: str, port: int, exc: OSError) -> MtestError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        hint = "another process listens there: choose another --metrics-port, or 0 for any free one"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: choose a --metrics-port above 1023"
    else:
        hint = "give --metrics-host an address of this machine, such as 127.0.0.1 or 0.0.0.0"
    return MtestError(f"cannot serve metrics on `{where}`: {reason}", hint=hint)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], family: socket.AddressFamily, snapshot: SnapshotFn
    ) -> None:
        self.address_family = family
        self.snapshot = snapshot
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer: nothing to report (the default prints)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "mtest"

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the service's output is its own."""

    def _answer(self, *, head: bool) -> None:
        path = urlsplit(self.path).path
        if path not in ("/metrics", "/health"):
            self._send(HTTPStatus.NOT_FOUND, "not found: try /metrics or /health\n", _TEXT, head)
            return
        try:
            snapshot = self.server.snapshot()
            body = render(snapshot) if path == "/metrics" else ""
        except Exception as exc:  # the caller's snapshot function: anything
            reason = f"the metrics could not be read: {type(exc).__name__}: {exc}\n"
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, reason, _TEXT, head)
            return
        if path == "/metrics":
            self._send(HTTPStatus.OK, body, CONTENT_TYPE, head)
        elif snapshot.healthy:
            self._send(HTTPStatus.OK, "ok\n", _TEXT, head)
        else:
            reason = "unhealthy: the last cycle hit an internal error (see .gates/service.log)\n"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, reason, _TEXT, head)

    def _send(self, status: HTTPStatus, text: str, content_type: str, head: bool) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)
