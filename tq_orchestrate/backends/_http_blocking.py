"""One blocking keep-alive HTTP/1.1 connection per thread, without asyncio.

What the fast SQS engine's single calls use (GetQueueUrl, receive, delete,
change visibility): a plain socket, read with a buffered reader. The many
connections of an upload are :class:`~tq_orchestrate.backends._http11.HttpPool`'s,
which needs asyncio; keeping this part apart lets a worker and a queue lookup
run without importing it.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

if TYPE_CHECKING:
    import ssl

_MAX_HEAD_BYTES = 64 * 1024

__all__ = ["BlockingConnection", "HttpResponse", "TransportError", "keep_alive_limit"]


class HttpResponse(NamedTuple):
    """A complete response. Header names are lower-case; repeats are joined by ``", "``."""

    status: int
    headers: dict[str, str]
    body: bytes


class TransportError(Exception):
    """The request got no complete response.

    ``maybe_delivered`` is False only when the request was never written to a
    connection, so the server cannot have seen it.
    """

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message)


@functools.lru_cache(maxsize=64)  # read after every response; servers repeat one value
def keep_alive_limit(keep_alive: str, default: float) -> float:
    """Seconds an idle connection may be kept: a ``Keep-Alive: timeout=N`` value less a margin."""
    for part in keep_alive.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            try:
                timeout = float(value)
            except ValueError:
                break
            return min(default, timeout - 1.0 if timeout >= 2 else timeout / 2)
    return default


class BlockingConnection:
    """One keep-alive HTTP/1.1 connection used from one thread at a time, with blocking sockets.

    For request/response calls whose caller waits anyway (receive, delete): no loop
    thread, no hand-over between threads. :meth:`request` opens the connection
    when needed and resends once on a fresh connection when a reused one turns out
    to be closed by the server before any byte of the response arrived (the server
    dropped an idle connection: it did not process the request). The socket is
    closed when the object is garbage (e.g. its thread's local storage ends).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_seconds: float = 10.0,
        idle_timeout_seconds: float = 30.0,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self._on_open = on_open
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._idle_until = 0.0
        self.connections_opened = 0

    def request(self, data: bytes, timeout_seconds: float) -> HttpResponse:
        """Send ``data`` (a complete request) and read the response within ``timeout_seconds``.

        Raises :class:`TransportError` when no complete response arrives.
        """
        if self._sock is not None and time.monotonic() >= self._idle_until:
            self.close()  # the server may be closing it right now
        if self._sock is not None:
            try:
                return self._exchange(data, timeout_seconds, reused=True)
            except _StaleConnection:
                self.close()
        return self._exchange(data, timeout_seconds, reused=False)

    def close(self) -> None:
        """Close the socket (a later request reconnects)."""
        sock, reader = self._sock, self._reader
        self._sock = self._reader = None
        if reader is not None:
            with contextlib.suppress(OSError):
                reader.close()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __del__(self) -> None:
        self.close()

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except OSError as e:  # ssl.SSLError included
            raise TransportError(
                f"cannot connect to {self.host}:{self.port}: {type(e).__name__}: {e}", maybe_delivered=False
            ) from e
        self._sock, self._reader = sock, sock.makefile("rb")
        self.connections_opened += 1
        if self._on_open is not None:
            self._on_open()
        return sock, self._reader

    def _exchange(self, data: bytes, timeout_seconds: float, *, reused: bool) -> HttpResponse:
        if self._sock is None or self._reader is None:
            sock, reader = self._connect()
        else:
            sock, reader = self._sock, self._reader
        started = False
        try:
            sock.settimeout(timeout_seconds)
            sock.sendall(data)
            first = reader.readline(_MAX_HEAD_BYTES + 1)
            if not first:
                raise ConnectionResetError("closed by the server before responding")
            started = True
            status, headers, keep_alive = _read_head(reader, first)
            body, framed = _read_body(reader, status, headers)
        except (OSError, ValueError, IndexError) as e:
            self.close()
            if reused and not started and _before_response(e):
                raise _StaleConnection from e
            timed_out = isinstance(e, TimeoutError)
            why = f"no response within {timeout_seconds:g} s" if timed_out else f"{type(e).__name__}: {e}"
            raise TransportError(
                f"connection to {self.host}:{self.port} lost before a complete response ({why}); "
                "the request may have been processed",
                maybe_delivered=True,
            ) from e
        if keep_alive is None or not framed:
            self.close()
        else:
            self._idle_until = time.monotonic() + keep_alive_limit(keep_alive, self.idle_timeout_seconds)
        return HttpResponse(status, headers, body)


class _StaleConnection(Exception):
    """A reused connection was closed before the response began: resend on a new one."""


def _before_response(error: BaseException) -> bool:
    """True for errors meaning the server closed the connection (not a timeout)."""
    return isinstance(error, ConnectionError | EOFError) or (
        isinstance(error, OSError) and not isinstance(error, TimeoutError)
    )


def _read_head(reader: BinaryIO, line: bytes) -> tuple[int, dict[str, str], str | None]:
    """Status, headers and the ``Keep-Alive`` value (None: not reusable), from the status line on."""
    while True:
        parts = line.decode("latin-1").split(" ", 2)
        version, status = parts[0], int(parts[1])
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            raw = reader.readline(_MAX_HEAD_BYTES + 1)
            size += len(raw)
            if size > _MAX_HEAD_BYTES:
                raise ValueError("response head too large")
            if not raw:
                raise EOFError("connection closed inside the response head")
            if raw in (b"\r\n", b"\n"):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if not 100 <= status < 200:
            break
        line = reader.readline(_MAX_HEAD_BYTES + 1)  # after an interim response, the real one
        if not line:
            raise EOFError("connection closed after an interim response")
    connection = headers.get("connection", "").lower()
    reusable = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    return status, headers, headers.get("keep-alive", "") if reusable else None


def _read_body(reader: BinaryIO, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body, and False when it ran until the server closed the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            line = reader.readline(_MAX_HEAD_BYTES + 1)
            if not line.endswith(b"\n"):
                raise EOFError("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if not size:
                break
            parts.append(_read_exact(reader, size))
            _read_exact(reader, 2)
        while True:  # trailers, up to the empty line
            line = reader.readline(_MAX_HEAD_BYTES + 1)
            if not line.endswith(b"\n"):
                raise EOFError("connection closed inside the trailers")
            if line in (b"\r\n", b"\n"):
                return b"".join(parts), True
    if "content-length" in headers:
        return _read_exact(reader, int(headers["content-length"])), True
    if status in (204, 304):
        return b"", True
    return reader.read(), False


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise EOFError(f"connection closed {n - len(data)} bytes before the end of the body")
    return data
