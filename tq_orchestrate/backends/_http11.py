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

:class:`BlockingConnection` (in :mod:`._http_blocking`, which needs no asyncio)
is the same client for one thread that waits for each response anyway
(receive, delete, change visibility): a plain socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine

from ._http_blocking import (
    _MAX_HEAD_BYTES,
    BlockingConnection,
    HttpResponse,
    TransportError,
    keep_alive_limit,
)

__all__ = ["BlockingConnection", "HttpPool", "HttpResponse", "TransportError", "keep_alive_limit"]

log = logging.getLogger(__name__)

_SWEEP_SECONDS = 0.5

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
        self._warming = 0
        """Connections :meth:`warm` is opening that no request waits for yet."""
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

    def warm(self, connections: int) -> None:
        """Start the loop thread and open up to ``connections`` idle connections ahead
        of the requests (at most ``max_connections`` in all); returns at once.

        A request that arrives meanwhile waits for one of them rather than opening
        another. A connection that cannot be opened is simply not there: requests
        open their own then, with the usual retry.
        """
        loop = self._loop or self._start()
        loop.call_soon_threadsafe(self._open_ahead, connections)

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
        if self._warming > len(self._waiting):
            self._waiting.append(job)  # a connection being opened ahead takes it
        elif self._open + self._opening < self.max_connections:
            self._opening += 1
            self._track(self._connect_for(job))
        else:
            self._waiting.append(job)

    def _track(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._connecting.add(task)  # a strong reference until it finishes
        task.add_done_callback(self._connecting.discard)

    def _open_ahead(self, connections: int) -> None:
        if self._closed:
            return
        for _ in range(max(0, min(connections, self.max_connections - self._open - self._opening))):
            self._opening += 1
            self._warming += 1
            self._track(self._connect_ahead())

    async def _connect_ahead(self) -> None:
        assert self._loop is not None
        try:
            conn: _Connection | None = await self._new_connection()
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            log.debug("opening a connection ahead failed: %s: %s", type(e).__name__, e)
            conn = None
        self._opening -= 1
        self._warming -= 1
        if conn is None:
            self._next_waiting()  # a request that waited for it opens its own
            return
        self._open += 1  # as in _connect_for: a connection lost already was counted down
        self.connections_opened += 1
        if conn.usable():
            self._finished(conn, reusable=True)
        else:
            self._next_waiting()

    async def _new_connection(self) -> _Connection:
        assert self._loop is not None
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
        return conn

    async def _connect_for(self, job: _Job) -> None:
        assert self._loop is not None
        job.attempts += 1
        try:
            conn = await self._new_connection()
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
