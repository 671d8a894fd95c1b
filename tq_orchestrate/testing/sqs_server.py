"""A minimal in-memory SQS server on 127.0.0.1 for tests and benchmarks.

Speaks the AWS JSON 1.0 protocol that botocore uses for SQS (``POST /`` with
``X-Amz-Target: AmazonSQS.<Operation>``) over keep-alive HTTP/1.1, checks no
signatures, and keeps queues in memory (:mod:`.sqs_state`). A request costs a
few tens of microseconds; ``latency_seconds`` delays every response to mimic a
network round trip. :class:`Faults` injects failures for tests.

Uploads take a short path while no fault is set: a ``SendMessageBatch`` that
stores every entry is read with orjson and answered by
:meth:`.SqsState.send_plain_batch` (the same bytes, not through
:meth:`.SqsState.handle`); every other request goes the general way.

In a test::

    with SqsStandIn(latency_seconds=0.0, faults=Faults(throttle_rate=0.1)) as server:
        url = server.create_queue("jobs")
        ...  # point boto3 / TaskQueue at server.endpoint_url
        assert sorted(server.bodies("jobs")) == expected

From the command line (prints the endpoint URL on its first line, runs until
SIGINT/SIGTERM)::

    python -m tq_orchestrate.testing.sqs_server --port 9324 --latency-ms 20 --queue jobs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import signal
import ssl
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import orjson

from ._http import _READ_BYTES, _READ_HEADERS, _error, _HttpConnection, _parse_head  # noqa: F401 - tests import them here
from .faults import Faults, FaultStats, _cumulative, _injects_nothing
from .sqs_state import Reply, SqsState

__all__ = ["FaultStats", "Faults", "SqsStandIn", "main"]

T = TypeVar("T")

_POLL_SECONDS = 0.02
_BACKLOG = 1024
"""Pending connections the listening socket holds. asyncio's default (100) overflows when a
fast-engine client opens its 256 connections while the server is busy: the kernel drops the
SYNs and the client waits a 1 s retransmit, which halved short benchmark runs at random."""


class SqsStandIn:
    """The server; run it in a background thread with ``with`` (or :meth:`start`/:meth:`stop`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        faults: Faults | None = None,
        store: bool = True,
        chunked_responses: bool = False,
        keep_alive_timeout_seconds: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        region: str = "us-east-1",
        account: str = "000000000000",
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.port = port
        self.latency_seconds = latency_seconds
        self.chunked_responses = chunked_responses
        self.keep_alive_timeout_seconds = keep_alive_timeout_seconds
        self._faults = faults or Faults()
        self._quiet = _injects_nothing(self._faults)
        self._rng = random.Random(self._faults.seed)
        self._stats = FaultStats()
        self._state = SqsState(store=store, region=region, account=account)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_HttpConnection] = set()
        self._polls: set[asyncio.Future[None]] = set()
        self._read_buffer = memoryview(bytearray(_READ_BYTES))  # every connection reads into it in turn
        self._due: deque[tuple[float, _HttpConnection, bytes]] = deque()  # delayed responses, by time
        self._due_timer: asyncio.TimerHandle | None = None
        self._head_lines: dict[str, tuple[str, str]] = {}  # see _parse_head

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` with an ``ssl_context``; valid once started)."""
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------

    async def serve(self) -> None:
        """Start listening in the running loop (``port`` is set afterwards)."""
        self._loop = asyncio.get_running_loop()
        self._due.clear()  # responses of a former run, and its loop's timer
        self._due_timer = None
        self._server = await self._loop.create_server(  # clients open hundreds of connections at once
            lambda: _HttpConnection(self), self.host, self.port, ssl=self.ssl_context, backlog=_BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._state.endpoint_url = self.endpoint_url

    async def shutdown(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        self._due.clear()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def start(self) -> SqsStandIn:
        """Serve from a daemon thread; return once listening."""
        started: Future[None] = Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve())
            except BaseException as e:  # reported to start()
                started.set_exception(e)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="sqs-stand-in", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        return self

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start`."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already stopped
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> SqsStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection and control (any thread) --------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the server's loop thread and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    def create_queue(self, name: str, attributes: dict[str, str] | None = None) -> str:
        """Create a queue (or return the existing one's URL)."""
        params: dict[str, Any] = {"QueueName": name, "Attributes": attributes or {}}
        return str(self.call(lambda: self._state.create_queue(params))["QueueUrl"])

    def bodies(self, name: str) -> list[str]:
        """Every message body stored in queue ``name`` (visible, in flight or delayed)."""
        return self.call(lambda: self._state.bodies(name))

    def counts(self, name: str) -> tuple[int, int, int]:
        """(visible, in flight, delayed) of queue ``name``."""

        def read() -> tuple[int, int, int]:
            queue = self._state.queues[name]
            self._state.has_visible(queue)  # moves due messages first
            visible, inflight, delayed = queue.counts
            return visible, inflight, delayed

        return self.call(read)

    @property
    def stats(self) -> FaultStats:
        """A snapshot of what the server saw and injected so far."""
        return self.call(self._stats.copy)

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        def swap() -> None:
            self._faults = faults
            self._quiet = _injects_nothing(faults)
            self._rng = random.Random(faults.seed)

        self.call(swap)

    # -- request handling (loop thread) ---------------------------------------------------

    def _handle(self, conn: _HttpConnection, operation: str, body: bytes | bytearray) -> None:
        self._stats.requests[operation] += 1
        if self._quiet and operation == "SendMessageBatch":
            payload = self._send_plain(body)
            if payload is not None:
                conn.send(payload, self.latency_seconds)
                return
        stats, faults, rng = self._stats, self._faults, self._rng
        if self._quiet:  # no draws: nothing to inject
            targeted, kind = False, -1
        else:
            targeted = operation in faults.operations
            draw = rng.random() if targeted else 1.0
            bands = (faults.drop_before_rate, faults.throttle_rate, faults.error_rate, faults.drop_after_rate)
            kind = next((i for i, edge in enumerate(_cumulative(bands)) if draw < edge), -1)
        if kind == 0:
            stats.dropped_before += 1
            conn.abort()
            return
        if kind == 1:
            stats.throttled += 1
            reply = _error(
                400,
                "com.amazon.coral.availability#ThrottlingException",
                "Rate exceeded",
                "AWS.SimpleQueueService.RequestThrottled;Sender",
            )
        elif kind == 2:
            stats.errors += 1
            reply = _error(
                500,
                "com.amazon.coral.service#InternalFailure",
                "injected internal failure",
                "InternalFailure;Receiver",
            )
        else:
            try:
                params = json.loads(body) if body else {}
            except ValueError:
                params = None
            if not isinstance(params, dict):
                reply = _error(
                    400,
                    "com.amazonaws.sqs#InvalidParameterValue",
                    "body is not a JSON object",
                    "InvalidParameterValue;Sender",
                )
            elif operation == "ReceiveMessage" and self._should_wait(params):
                task = asyncio.ensure_future(self._long_poll(conn, params))
                self._polls.add(task)  # a strong reference until it finishes
                task.add_done_callback(self._polls.discard)
                return
            else:
                reply = self._run(operation, params, targeted)
        delay = self.latency_seconds
        if targeted and faults.slow_rate and rng.random() < faults.slow_rate:
            stats.slowed += 1
            delay += faults.slow_seconds
        if kind == 3:
            stats.dropped_after += 1
            conn.abort_later(delay)
            return
        conn.respond(reply, delay)

    def _send_plain(self, body: bytes | bytearray) -> bytes | None:
        """The reply to a batch :meth:`SqsState.send_plain_batch` answers, else None (nothing done).

        orjson reads the body (json takes four times as long); it reads integers
        beyond 64 bits as floats, which ``send_plain_batch`` refuses like every
        other non-plain value, and every request it refuses is read again by
        :mod:`json`.
        """
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return self._state.send_plain_batch(params) if type(params) is dict else None

    def _write_later(self, conn: _HttpConnection, data: bytes, delay: float) -> None:
        """Write ``data`` to ``conn`` in ``delay`` seconds (one timer serves every response due in order)."""
        loop = self._loop
        assert loop is not None
        when, due = loop.time() + delay, self._due
        if due and when < due[-1][0]:  # due before the last one queued (another delay): a timer of its own
            loop.call_at(when, conn._write, data)
            return
        due.append((when, conn, data))
        if self._due_timer is None:
            self._due_timer = loop.call_at(due[0][0], self._write_due)

    def _write_due(self) -> None:
        loop, due = self._loop, self._due
        assert loop is not None
        self._due_timer = None
        now = loop.time()
        while due and due[0][0] <= now:
            _, conn, data = due.popleft()
            try:
                conn._write(data)
            except Exception as exc:  # reported as a timer callback's would be; the others still go out
                loop.call_exception_handler(
                    {"message": "stand-in: writing a delayed response failed", "exception": exc}
                )
        if due and self._due_timer is None:
            self._due_timer = loop.call_at(due[0][0], self._write_due)

    def _run(self, operation: str, params: dict[str, Any], targeted: bool) -> Reply:
        faults, state = self._faults, self._state
        if operation != "SendMessageBatch" or not targeted:
            return state.handle(operation, params)
        fail = self._entry_fault(faults) if faults.fail_entry or faults.entry_failure_rate else None
        reply = state.handle(operation, params) if fail is None else _batch_with(state, params, fail)
        if faults.bad_md5_rate and reply.status == 200:
            for entry in reply.document.get("Successful", ()):
                if self._rng.random() < faults.bad_md5_rate:
                    self._stats.bad_md5 += 1
                    entry["MD5OfMessageBody"] = "0" * 32
        return reply

    def _entry_fault(self, faults: Faults) -> Callable[[str], bool]:
        predicate, rate, rng, stats = faults.fail_entry, faults.entry_failure_rate, self._rng, self._stats

        def fail(body: str) -> bool:
            hit = (predicate is not None and predicate(body)) or (rate > 0 and rng.random() < rate)
            if hit:
                stats.entry_failures += 1
            return hit

        return fail

    def _should_wait(self, params: dict[str, Any]) -> bool:
        wait = params.get("WaitTimeSeconds")
        queue = self._state.queues.get(str(params.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1])
        if queue is None:
            return False
        if wait is None:
            wait = queue.number("ReceiveMessageWaitTimeSeconds", 0)
        return bool(wait) and not self._state.has_visible(queue)

    async def _long_poll(self, conn: _HttpConnection, params: dict[str, Any]) -> None:
        assert self._loop is not None
        queue_name = str(params.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        wait = params.get("WaitTimeSeconds")
        queue = self._state.queues.get(queue_name)
        if wait is None and queue is not None:
            wait = queue.number("ReceiveMessageWaitTimeSeconds", 0)
        deadline = self._loop.time() + min(20.0, float(wait or 0))
        while self._loop.time() < deadline and not conn.closed:
            queue = self._state.queues.get(queue_name)
            if queue is None or self._state.has_visible(queue):
                break
            await asyncio.sleep(_POLL_SECONDS)
        conn.respond(self._state.handle("ReceiveMessage", params), self.latency_seconds)


def _batch_with(state: SqsState, params: dict[str, Any], fail: Callable[[str], bool]) -> Reply:
    from .sqs_state import SqsFault

    try:
        return Reply(200, state.send_message_batch(params, fail=fail))
    except SqsFault as e:
        return e.reply()
    except (KeyError, TypeError, ValueError) as e:
        return SqsFault("InvalidParameterValue", f"{type(e).__name__}: {e}").reply()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: serve until SIGINT/SIGTERM; the first output line is the endpoint URL."""
    parser = argparse.ArgumentParser(
        prog="python -m tq_orchestrate.testing.sqs_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every response by this much")
    parser.add_argument(
        "--queue", action="append", default=[], help="create this queue at start (repeatable)"
    )
    parser.add_argument("--no-store", action="store_true", help="acknowledge sends without keeping messages")
    args = parser.parse_args(argv)
    # a process of its own, holding (with --store) millions of long-lived messages without cycles:
    # collect young garbage less often, and never walk what the imports left
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()
    asyncio.run(_serve_cli(args))


async def _serve_cli(args: argparse.Namespace) -> None:
    server = SqsStandIn(
        host=args.host, port=args.port, latency_seconds=args.latency_ms / 1000, store=not args.no_store
    )
    await server.serve()
    for name in args.queue:
        server.create_queue(name)
    print(server.endpoint_url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()
    print("stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
