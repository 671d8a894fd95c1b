"""A lean keep-alive HTTP/1.1 client: many connections, one asyncio loop thread.

Used by the fast SQS sender (:mod:`tq_orchestrate.backends.sqs_fast`). Callers
hand over complete request bytes from any thread with :meth:`HttpPool.request`;
the loop writes each one on an idle connection (opening up to
``max_connections``), parses the response (``Content-Length``, chunked, or
read-until-close framing) and calls the callback in the loop thread with an
:class:`HttpResponse` or a :class:`TransportError`. No pipelining: one request
in flight per connection.

A request whose connection could not be opened never reached the server and is
retried once on a fresh connection. A request whose connection broke after it
was written is reported with ``maybe_delivered=True``: the server may have acted
on it. Connections the server closes (``Connection: close``, EOF, reset) are
replaced on demand. An idle connection is not reused after the server's
``Keep-Alive: timeout=N`` (less a second of margin) or ``idle_timeout_seconds``,
so a request is not written into a connection the server is closing.

:class:`BlockingConnection` is the same client for one thread that waits for
each response anyway (receive, delete, change visibility): a plain socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import BinaryIO, NamedTuple

log = logging.getLogger(__name__)

_MAX_HEAD_BYTES = 64 * 1024
_SWEEP_SECONDS = 0.5


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


Callback = Callable[[HttpResponse | TransportError], None]


class _Job:
    __slots__ = ("attempts", "callback", "data")

    def __init__(self, data: bytes, callback: Callback) -> None:
        self.data = data
        self.callback = callback
        self.attempts = 0


class HttpPool:
    """Keep-alive connections to one ``host:port`` driven by a private event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 60.0,
        connect_attempts: int = 2,
        idle_timeout_seconds: float = 30.0,
        name: str = "tqo-http",
    ) -> None:
        self.host = host
        self.port = port
        self.max_connections = max(1, max_connections)
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout_seconds
        self._read_timeout = read_timeout_seconds
        self._connect_attempts = max(1, connect_attempts)
        self.idle_timeout_seconds = idle_timeout_seconds
        self._name = name
        self._inbox: deque[_Job] = deque()
        self._wake_pending = False
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # loop-thread state
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._waiting: deque[_Job] = deque()
        self._opening = 0
        self._connecting: set[asyncio.Future[None]] = set()
        self._open = 0
        self.connections_opened = 0

    # -- any thread -----------------------------------------------------------

    def request(self, data: bytes, callback: Callback) -> None:
        """Queue ``data`` (a complete HTTP/1.1 request); ``callback`` runs in the loop thread."""
        loop = self._loop or self._start()
        self._inbox.append(_Job(data, callback))
        if not self._wake_pending:
            self._wake_pending = True
            loop.call_soon_threadsafe(self._drain)

    def close(self) -> None:
        """Abort every connection and stop the loop thread (pending callbacks get errors)."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(self._shutdown)
        thread.join()
        loop.close()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("HttpPool is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.call_later(_SWEEP_SECONDS, self._sweep)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())

    # -- loop thread ----------------------------------------------------------

    def _drain(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        while inbox:
            self._dispatch(inbox.popleft())

    def _dispatch(self, job: _Job) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        while self._idle:
            conn = self._idle.pop()
            if conn.usable() and now < conn.idle_until:
                conn.send(job)
                self._busy.add(conn)
                return
            conn.close()  # stale: the server may be closing it right now
        if self._open + self._opening < self.max_connections:
            self._opening += 1
            task = asyncio.ensure_future(self._connect_for(job))
            self._connecting.add(task)  # a strong reference until it finishes
            task.add_done_callback(self._connecting.discard)
        else:
            self._waiting.append(job)

    async def _connect_for(self, job: _Job) -> None:
        assert self._loop is not None
        job.attempts += 1
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                ),
                self._connect_timeout,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            self._opening -= 1
            self._connect_failed(job, e)
            return
        self._opening -= 1
        self._open += 1
        self.connections_opened += 1
        if conn.usable():
            conn.send(job)
            self._busy.add(conn)
        else:  # closed between connect and first write: the request was never sent
            self._connect_failed(job, ConnectionResetError("connection closed before the request was sent"))

    def _connect_failed(self, job: _Job, error: BaseException) -> None:
        if job.attempts < self._connect_attempts and not self._closed:
            self._dispatch(job)
            return
        what = f"cannot connect to {self.host}:{self.port}: {type(error).__name__}: {error}"
        _deliver(job, TransportError(what, maybe_delivered=False))
        self._next_waiting()

    def _next_waiting(self) -> None:
        if self._waiting:
            self._dispatch(self._waiting.popleft())

    def _finished(self, conn: _Connection, reusable: bool) -> None:
        self._busy.discard(conn)
        if reusable and self._waiting:
            conn.send(self._waiting.popleft())
            self._busy.add(conn)
        elif reusable:
            assert self._loop is not None
            conn.idle_until = self._loop.time() + conn.keep_alive_limit(self.idle_timeout_seconds)
            self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self._open -= 1
        self._busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._next_waiting()

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for conn in list(self._busy):
            if now - conn.sent_at > self._read_timeout:
                conn.abort(f"no response within {self._read_timeout:g} s")
        for conn in [c for c in self._idle if now >= c.idle_until]:
            self._idle.remove(conn)
            conn.close()
        if not self._closed:
            self._loop.call_later(_SWEEP_SECONDS, self._sweep)

    def _shutdown(self) -> None:
        assert self._loop is not None
        for conn in [*self._idle, *self._busy]:
            conn.abort("the sender was closed")
        while self._waiting:
            _deliver(self._waiting.popleft(), TransportError("the sender was closed", maybe_delivered=False))
        while self._inbox:
            _deliver(self._inbox.popleft(), TransportError("the sender was closed", maybe_delivered=False))
        self._loop.call_soon(self._loop.stop)


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


def _deliver(job: _Job, outcome: HttpResponse | TransportError) -> None:
    try:
        job.callback(outcome)
    except Exception:  # a callback bug must not kill the connection loop
        log.exception("HTTP response callback failed")


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(6)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, pool: HttpPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._job: _Job | None = None
        self._abort_reason: str | None = None
        self._last_keep_alive = ""
        self.sent_at = 0.0
        self.idle_until = 0.0
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._status = 0
        self._headers: dict[str, str] = {}
        self._remaining = 0
        self._parts: list[bytes] = []
        self._keep_alive = True

    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing() and self._job is None

    def send(self, job: _Job) -> None:
        assert self._transport is not None and self._pool._loop is not None
        self._job = job
        self.sent_at = self._pool._loop.time()
        self._transport.write(job.data)

    def keep_alive_limit(self, default: float) -> float:
        """Seconds this connection may stay idle: the server's ``Keep-Alive: timeout`` less a margin."""
        return keep_alive_limit(self._last_keep_alive, default)

    def close(self) -> None:
        """Close an idle connection."""
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        self._abort_reason = reason
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._job is None:
            self.abort("unexpected data from the server while idle")
            return
        self._buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as e:
            self.abort(f"malformed HTTP response: {e}")

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        pool = self._pool
        job, self._job = self._job, None
        if self._transport is not None:  # Python 3.10's TLS transport is not closed by a lost connection
            self._transport.close()
        self._transport = None
        pool._lost(self)
        if job is None:
            return
        if self._state == _UNTIL_CLOSE and exc is None and self._abort_reason is None:
            self._parts.append(bytes(self._buf))
            _deliver(job, HttpResponse(self._status, self._headers, b"".join(self._parts)))
            return
        why = self._abort_reason or (f"{type(exc).__name__}: {exc}" if exc else "closed by the server")
        _deliver(
            job,
            TransportError(
                f"connection to {pool.host}:{pool.port} lost before a complete response ({why}); "
                "the request may have been processed",
                maybe_delivered=True,
            ),
        )

    # -- response parsing -----------------------------------------------------------

    def _parse(self) -> None:
        while self._job is not None:
            state = self._state
            if state == _HEAD:
                progressed = self._parse_head()
            elif state == _LENGTH:
                progressed = self._parse_length()
            elif state == _UNTIL_CLOSE:
                return
            else:
                progressed = self._parse_chunked()
            if not progressed:
                return

    def _parse_head(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                raise ValueError("response head too large")
            return False
        lines = buf[:end].decode("latin-1").split("\r\n")
        del buf[: end + 4]
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
        if 100 <= status < 200:
            return True  # interim response (100 Continue): the real one follows
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self._status, self._headers = status, headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _LENGTH
        elif status in (204, 304):
            self._state, self._remaining = _LENGTH, 0
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE
        return True

    def _parse_length(self) -> bool:
        buf, n = self._buf, self._remaining
        if len(buf) < n:
            return False
        self._parts.append(bytes(buf[:n]))
        del buf[:n]
        self._complete()
        return True

    def _parse_chunked(self) -> bool:
        buf = self._buf
        if self._state == _CHUNK_DATA:
            n = self._remaining
            if len(buf) < n + 2:
                return False
            self._parts.append(bytes(buf[:n]))
            del buf[: n + 2]
            self._state = _CHUNK_SIZE
            return True
        eol = buf.find(b"\r\n")
        if eol < 0:
            return False
        line = bytes(buf[:eol])
        del buf[: eol + 2]
        if self._state == _TRAILERS:
            if not line:
                self._complete()
            return True
        size = int(line.split(b";", 1)[0].strip(), 16)
        self._state = _CHUNK_DATA if size else _TRAILERS
        self._remaining = size
        return True

    def _complete(self) -> None:
        job, self._job = self._job, None
        assert job is not None
        response = HttpResponse(self._status, self._headers, b"".join(self._parts))
        reusable = self._keep_alive and not self._buf
        self._last_keep_alive = self._headers.get("keep-alive", "")
        self._reset()
        if not reusable and self._transport is not None:
            self._transport.close()
        self._pool._finished(self, reusable)
        _deliver(job, response)


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
        except (OSError, ssl.SSLError) as e:
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
