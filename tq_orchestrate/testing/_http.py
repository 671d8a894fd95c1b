"""The SQS stand-in's HTTP/1.1 side: reading request heads and bodies, writing replies."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, TypeVar

from .sqs_messages import Reply

if TYPE_CHECKING:
    from .sqs_server import SqsStandIn


T = TypeVar("T")

_MAX_HEAD_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024  # per read; asyncio's 256 KiB reads cost a fresh allocation each (~15 us)
_POLL_SECONDS = 0.02
_READ_HEADERS = ("x-amz-target", "connection", "transfer-encoding", "content-length")
_KNOWN_LINES = 1024  # head lines remembered (X-Amz-Date and Content-Length lines keep coming)
_READ_HEADER_STARTS = frozenset(  # how a line naming one of them starts (perhaps with whitespace)
    c for c in map(chr, range(256)) if c.isspace() or c.lower() in {name[0] for name in _READ_HEADERS}
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    500: "Internal Server Error",
}


def _error(status: int, type_: str, message: str, query_error: str) -> Reply:
    return Reply(status, {"__type": type_, "message": message}, (("x-amzn-query-error", query_error),))


def _parse_head(text: str, known: dict[str, tuple[str, str]]) -> dict[str, str]:
    """``:method`` and the :data:`_READ_HEADERS` of a request head (lower-case names, values
    stripped, the last line of a name wins); lines naming other headers are skipped unread.

    ``known`` remembers lines read before (most lines come again and again) as (name, value).
    """
    lines = text.split("\r\n")
    head = {":method": lines[0].split(" ", 1)[0].upper()}
    for line in lines[1:]:
        if line[:1] in _READ_HEADER_STARTS:
            pair = known.get(line)
            if pair is None:
                if len(known) >= _KNOWN_LINES:
                    known.clear()
                name, _, value = line.partition(":")
                pair = known[line] = (name.strip().lower(), value.strip())
            head[pair[0]] = pair[1]
    return head


class _HttpConnection(asyncio.BufferedProtocol):
    """One client connection: HTTP/1.1 requests answered in order, keep-alive."""

    def __init__(self, server: SqsStandIn) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False
        self._close_after = False
        self._served = 0
        self.closed = False
        self._request_ids = 0
        self._id_tag = f"{id(self) & 0xFFFFFF:06x}"
        self._ok_head = (  # what _encode writes for a plain 200: (request number, length, payload)
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"x-amzn-RequestId: 5e5e0000-0000-4000-8000-%s%%06x\r\n"
            b"Connection: keep-alive\r\nContent-Length: %%d\r\n\r\n%%s"
        ) % self._id_tag.encode()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connections.add(self)
        self._server._stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._transport is not None:  # Python 3.10's TLS transport is not closed by a lost connection
            self._transport.close()
        self._server._connections.discard(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._buf += self._server._read_buffer[:nbytes]
        if not self._busy:
            self._process()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def abort_later(self, delay: float) -> None:
        self._busy = True
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.abort)
        else:
            self.abort()

    def _process(self) -> None:
        while not self._busy and not self.closed:
            request = self._next_request()
            if request is None:
                return
            head, body = request
            self._served += 1
            self._busy = True
            target = head.get("x-amz-target", "")
            connection = head.get("connection")
            self._close_after = connection is not None and "close" in connection.lower()
            limit = self._server._faults.close_after_requests
            if limit and self._served >= limit:
                self._close_after = True
                self._server._stats.closed += 1
            if head[":method"] == "GET":
                self.respond(Reply(200, {"status": "ok"}), 0.0)
            elif not target.startswith("AmazonSQS."):
                self.respond(
                    _error(
                        400,
                        "com.amazonaws.sqs#UnsupportedProtocol",
                        "only the AWS JSON 1.0 protocol (X-Amz-Target: AmazonSQS.*) is served",
                        "UnsupportedProtocol;Sender",
                    ),
                    0.0,
                )
            else:
                self._server._handle(self, target[len("AmazonSQS.") :], body)

    def _next_request(self) -> tuple[dict[str, str], bytearray] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                self.abort()
            return None
        head = _parse_head(buf[:end].decode("latin-1"), self._server._head_lines)
        encoding = head.get("transfer-encoding")
        if encoding is not None and "chunked" in encoding.lower():
            del buf[: end + 4]
            self._busy = True
            self._close_after = True
            self.respond(_error(411, "LengthRequired", "send Content-Length", "LengthRequired;Sender"), 0.0)
            return None
        length = int(head.get("content-length", "0") or 0)
        if len(buf) < end + 4 + length:
            return None
        body = buf[end + 4 : end + 4 + length]
        del buf[: end + 4 + length]
        return head, body

    def respond(self, reply: Reply, delay: float) -> None:
        payload = json.dumps(reply.document, separators=(",", ":")).encode("utf-8")
        self._send(self._encode(reply.status, payload, reply.headers), delay)

    def send(self, payload: bytes, delay: float) -> None:
        """Answer 200 with ``payload`` (a JSON document) after ``delay`` seconds."""
        self._send(self._encode(200, payload, ()), delay)

    def _send(self, data: bytes, delay: float) -> None:
        if delay > 0:
            self._server._write_later(self, data, delay)
        else:
            self._write(data)

    def _encode(self, status: int, payload: bytes, headers: tuple[tuple[str, str], ...]) -> bytes:
        self._request_ids += 1
        server = self._server
        keep_alive = server.keep_alive_timeout_seconds
        if (
            status == 200
            and not (headers or self._close_after or server.chunked_responses)
            and keep_alive is None
        ):
            return self._ok_head % (self._request_ids, len(payload), payload)
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            f"x-amzn-RequestId: 5e5e0000-0000-4000-8000-{self._id_tag}{self._request_ids:06x}\r\n"
            + ("Connection: close\r\n" if self._close_after else "Connection: keep-alive\r\n")
        )
        if keep_alive is not None and not self._close_after:
            head += f"Keep-Alive: timeout={keep_alive:g}\r\n"
        for name, value in headers:
            head += f"{name}: {value}\r\n"
        if server.chunked_responses and payload:
            half = len(payload) // 2 or len(payload)
            chunks = [payload[:half], payload[half:]]
            framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks if c)
            return (
                (head + "Transfer-Encoding: chunked\r\n\r\n").encode("latin-1")
                + framed
                + b"0\r\nX-Trailer: t\r\n\r\n"
            )
        return (head + f"Content-Length: {len(payload)}\r\n\r\n").encode("latin-1") + payload

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            return
        transport.write(data)
        if self._close_after:
            self.closed = True
            transport.close()
            return
        self._busy = False
        if self._buf:
            self._process()
        elif self._server.keep_alive_timeout_seconds is not None:
            delay = self._server.keep_alive_timeout_seconds
            self._idle_timer = asyncio.get_running_loop().call_later(delay, self._close_idle)

    def _close_idle(self) -> None:
        self._idle_timer = None
        if not self._busy and not self._buf and self._transport is not None:
            self._server._stats.closed += 1
            self.closed = True
            self._transport.close()
