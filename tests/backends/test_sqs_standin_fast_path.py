"""The stand-in's upload fast path answers exactly as its general path does.

``SqsState.send_plain_batch`` (the whole batch checked at once, the reply
written as text) must give the bytes ``handle`` gives for the same batch, or
decline without changing anything. Over HTTP: orjson reads the plain batches,
``json`` reads the rest; delayed responses share one timer, reads share one
buffer.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tq_orchestrate.testing import Faults, SqsStandIn
from tq_orchestrate.testing.sqs_server import _READ_HEADERS, _HttpConnection, _parse_head
from tq_orchestrate.testing.sqs_state import Queue, SqsState, md5_hex

ENDPOINT = "http://127.0.0.1:1"
QUEUES = {
    "std": {},
    "late": {"DelaySeconds": "5"},
    "odd": {"DelaySeconds": "nan"},
    "f.fifo": {"FifoQueue": "true"},
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def twin_states(store: bool) -> tuple[SqsState, SqsState]:
    """Two states that answer alike: same clock, same message id prefix, same queues."""
    clock = FakeClock()
    a, b = (SqsState(ENDPOINT, store=store, clock=clock) for _ in range(2))
    b._id_prefix = a._id_prefix
    for state in (a, b):
        for name, attributes in QUEUES.items():
            assert state.handle("CreateQueue", {"QueueName": name, "Attributes": attributes}).status == 200
    return a, b


def snapshot(state: SqsState) -> list[Any]:
    """Everything a queue holds that a later operation could see (not the wall-clock sent time)."""

    def one(queue: Queue) -> Any:
        return (
            [(m.message_id, m.body, m.md5, m.state, m.token, m.attributes) for m in queue.messages.values()],
            [(m.message_id, token) for m, token in queue.ready],
            [(until, token) for until, token, _, _ in queue.timers],
            list(queue.counts),
        )

    return [one(state.queues[name]) for name in QUEUES] + [next(state._ids)]


def assert_same_as_handle(params: dict[str, Any], store: bool) -> bytes | None:
    """Run ``params`` through the fast path on one twin and ``handle`` on the other; compare."""
    fast_state, general_state = twin_states(store)
    try:
        general = general_state.handle("SendMessageBatch", copy.deepcopy(params))
    except AttributeError:  # an entry that is no object: handle() fails, and so it still does
        assert fast_state.send_plain_batch(params) is None
        with pytest.raises(AttributeError):
            fast_state.handle("SendMessageBatch", params)
        assert snapshot(fast_state) == snapshot(general_state)
        return None
    fast = fast_state.send_plain_batch(params)
    if fast is None:  # declined: nothing changed, so handle() answers as on the twin
        again = fast_state.handle("SendMessageBatch", params)
        assert (again.status, again.document, again.headers) == (
            general.status,
            general.document,
            general.headers,
        )
    else:
        assert general.status == 200 and general.document["Failed"] == []
        assert fast == json.dumps(general.document, separators=(",", ":")).encode()
    assert snapshot(fast_state) == snapshot(general_state)
    return fast


ABSENT = object()
ids = st.sampled_from(["0", "1", "a", "A_b-9", "x" * 80, "x" * 81, "a\n", "", "é", "a,b", 7, None])
bodies = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["plain", "tab\tcr\rlf\n", "nul\x00", "del\x7f", "lone\ud800", "é✓", "\U0001f600"]),
    st.sampled_from(["y" * 250_000, "z" * 262_145, 5, None, ABSENT]),
)
delays = st.sampled_from([ABSENT, 0, 1, 900, 901, -1, True, 1.0, None, 2**70])
plain_bodies = st.text(
    st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
) | st.sampled_from(["tab\tcr\rlf\n", "del\x7f", '{"a": "\\"q\\""}', "z" * 3000])
plain_delays = st.sampled_from([ABSENT, ABSENT, 0, 0, 7, 900])


@st.composite
def entries(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(["not an entry", ["Id", "0"], None]))
    entry: dict[str, Any] = {}
    for key, values in (("Id", ids), ("MessageBody", bodies), ("DelaySeconds", delays)):
        value = draw(values)
        if value is not ABSENT:
            entry[key] = value
    if draw(st.integers(0, 8)) == 0:
        entry["MessageAttributes"] = {"k": {"DataType": "String", "StringValue": "v"}}
    if draw(st.integers(0, 8)) == 0:
        entry["MessageGroupId"] = "g"
    return entry


def _set(key: str, values: st.SearchStrategy[Any]) -> Any:
    def spoil(entry: dict[str, Any], draw: st.DrawFn) -> None:
        entry[key] = draw(values)

    return spoil


SPOILERS = [
    None,
    _set("DelaySeconds", st.sampled_from([901, -1, True, False, 1.0, 0.0, None, 2**70, "0"])),
    _set("MessageBody", st.sampled_from(["", "nul\x00", "us\x1f", "lone\ud800", 5, None, "z" * 262_145])),
    _set("Id", st.sampled_from(["e0", "0", "", "x" * 81, "a\n", "a,b", "é", 7, None])),
    _set("MessageAttributes", st.just({"k": {"DataType": "String", "StringValue": "v"}})),
    _set("MessageGroupId", st.just("g")),
    lambda entry, draw: entry.pop("MessageBody"),
    lambda entry, draw: entry.pop("Id"),
]


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    queue = draw(st.sampled_from(["std", "std", "late", *QUEUES, "missing"]))
    params: dict[str, Any] = {"QueueUrl": f"{ENDPOINT}/000000000000/{queue}"}
    shape = draw(st.integers(0, 20))
    if shape == 0:
        params["Entries"] = draw(st.sampled_from([None, "entries", {"Id": "0"}]))
    elif shape == 1:  # distinct plain entries, too many of them
        params["Entries"] = [{"Id": str(i), "MessageBody": "b"} for i in range(11)]
    elif shape == 2:
        params["QueueUrl"] = draw(st.sampled_from([None, 5, ""]))
        params["Entries"] = [{"Id": "0", "MessageBody": "b"}]
    elif shape < 12:  # mostly plain, distinct ids: the fast path's own batches, now and then spoilt
        count, prefix = draw(st.integers(1, 10)), draw(st.sampled_from(["", "e"]))  # "0".."9" or "e0"..
        params["Entries"] = [
            {"Id": f"{prefix}{i}", "MessageBody": draw(plain_bodies), "DelaySeconds": draw(plain_delays)}
            for i in range(count)
        ]
        for entry in params["Entries"]:
            if entry["DelaySeconds"] is ABSENT:
                del entry["DelaySeconds"]
        if draw(st.integers(0, 2)) == 0:  # spoil one entry, or replace it by any entry at all
            entry = params["Entries"][draw(st.integers(0, count - 1))]
            spoil = draw(st.sampled_from(SPOILERS))
            if spoil is None:
                params["Entries"][params["Entries"].index(entry)] = draw(entries())
            else:
                spoil(entry, draw)
    else:
        params["Entries"] = draw(st.lists(entries(), max_size=11))
    return params


def plain(queue: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"QueueUrl": f"{ENDPOINT}/000000000000/{queue}", "Entries": list(entries)}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=batches(), store=st.booleans())
@example(params=plain("std", {"Id": "a,b", "MessageBody": "x"}), store=True)  # the ids' separator
@example(params=plain("std", {"Id": "a\n", "MessageBody": "x"}), store=True)  # _ENTRY_ID lets it by
@example(params=plain("odd", {"Id": "a", "MessageBody": "x", "DelaySeconds": 0}), store=True)
@example(params=plain("std", {"Id": "0", "MessageBody": "x"}, {"Id": "0", "MessageBody": "y"}), store=True)
@example(params=plain("std", {"Id": "0", "MessageBody": "unit separator \x1f"}), store=True)
@example(params=plain("std", {"Id": "0", "MessageBody": "é and nul \x00"}), store=True)
@example(params=plain("std", {"Id": "0", "MessageBody": "é and \ufffe"}), store=True)
@example(params=plain("std", *({"Id": str(i), "MessageBody": "y" * 250_000} for i in range(5))), store=True)
def test_fast_path_matches_handle(params: dict[str, Any], store: bool) -> None:
    assert_same_as_handle(params, store)


ATTRIBUTES = {"k": {"DataType": "String", "StringValue": "v"}}
SPOILT = [
    *(("DelaySeconds", v) for v in (901, -1, True, False, 1.0, 0.0, None, 2**70, "0")),
    *(("MessageBody", v) for v in ("", "nul\x00", "us\x1f", "lone\ud800", 5, None, "z" * 262_145)),
    *(("MessageBody", v) for v in ("é, nul \x00", "é, \ufffe", "é, lone \udc00")),
    *(("Id", v) for v in ("e0", "", "x" * 81, "a\n", "a,b", "é", 7, None, ["e1"])),
    ("MessageAttributes", ATTRIBUTES),
    ("MessageGroupId", "g"),  # a standard queue ignores it: still plain
    ("Id", ABSENT),
    ("MessageBody", ABSENT),
]


@pytest.mark.parametrize("store", [True, False])
@pytest.mark.parametrize(("key", "value"), SPOILT)
def test_one_entry_spoils_a_plain_batch(key: str, value: Any, store: bool) -> None:
    entries: list[dict[str, Any]] = [
        {"Id": f"e{i}", "MessageBody": f"body {i}", "DelaySeconds": 0} for i in range(3)
    ]
    if value is ABSENT:
        del entries[1][key]
    else:
        entries[1][key] = value
    fast = assert_same_as_handle(plain("std", *entries), store)
    assert (fast is not None) == (key == "MessageGroupId")


@pytest.mark.parametrize("store", [True, False])
@pytest.mark.parametrize("queue", ["std", "late"])
def test_plain_batches_take_the_fast_path(store: bool, queue: str) -> None:
    bodies = ["plain", "é✓ and \U0001f600", "tab\tand\nnewline", "x" * 5000, '{"json": "\\"quoted\\""}']
    entries: list[dict[str, Any]] = [{"Id": f"m-{i}", "MessageBody": b} for i, b in enumerate(bodies)]
    entries[0]["DelaySeconds"] = 0  # overrides the queue's default
    entries[1]["DelaySeconds"] = 30
    fast = assert_same_as_handle({"QueueUrl": f"{ENDPOINT}/000000000000/{queue}", "Entries": entries}, store)
    assert fast is not None
    reply = json.loads(fast)
    assert [e["MD5OfMessageBody"] for e in reply["Successful"]] == [md5_hex(b) for b in bodies]


@pytest.mark.parametrize("first", [1, 240, 246, 247, 250, 255, 256, 2**40 - 3])
def test_message_ids_are_those_of_the_general_path(first: int) -> None:
    fast_state, general_state = twin_states(store=True)
    for state in (fast_state, general_state):
        state._ids = itertools.count(first)  # batches end at or cross a block of 256 ids
    for count in (10, 1, 9, 10, 3):
        params = {
            "QueueUrl": f"{ENDPOINT}/000000000000/std",
            "Entries": [{"Id": str(i), "MessageBody": f"b{i}"} for i in range(count)],
        }
        fast = fast_state.send_plain_batch(copy.deepcopy(params))
        general = general_state.handle("SendMessageBatch", copy.deepcopy(params))
        assert fast == json.dumps(general.document, separators=(",", ":")).encode()
    assert snapshot(fast_state) == snapshot(general_state)


# -- over HTTP ---------------------------------------------------------------------------------


class RawClient:
    """One keep-alive connection speaking just enough HTTP/1.1."""

    def __init__(self, server: SqsStandIn) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    @staticmethod
    def request(operation: str, body: bytes) -> bytes:
        return (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.%s\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n\r\n%s"
        ) % (operation.encode(), len(body), body)

    def call(self, operation: str, body: bytes) -> tuple[int, Any]:
        self.sock.sendall(self.request(operation, body))
        return self.response()

    def response(self) -> tuple[int, Any]:
        while b"\r\n\r\n" not in self.buf:
            self.receive()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        match = re.search(r"(?im)^content-length:\s*(\d+)", head)
        assert match is not None, head
        total = end + 4 + int(match.group(1))
        while len(self.buf) < total:
            self.receive()
        body = bytes(self.buf[end + 4 : total])
        del self.buf[:total]
        return int(head.split(" ", 2)[1]), json.loads(body)

    def receive(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[SqsStandIn]:
    with SqsStandIn() as server:
        server.create_queue("q")
        yield server


def batch_body(server: SqsStandIn, entries_json: str) -> bytes:
    return b'{"QueueUrl": "%s/000000000000/q", "Entries": %s}' % (
        server.endpoint_url.encode(),
        entries_json.encode(),
    )


def test_plain_batch_over_http(server: SqsStandIn) -> None:
    client = RawClient(server)
    bodies = [f"task {i} ✓" for i in range(10)]
    entries = json.dumps([{"Id": str(i), "MessageBody": b, "DelaySeconds": 0} for i, b in enumerate(bodies)])
    status, reply = client.call("SendMessageBatch", batch_body(server, entries))
    assert status == 200 and reply["Failed"] == []
    assert [(e["Id"], e["MD5OfMessageBody"]) for e in reply["Successful"]] == [
        (str(i), md5_hex(b)) for i, b in enumerate(bodies)
    ]
    assert len({e["MessageId"] for e in reply["Successful"]}) == 10
    assert sorted(server.bodies("q")) == sorted(bodies)
    assert server.stats.requests["SendMessageBatch"] == 1
    client.close()


DELAY_2_70 = '[{"Id": "0", "MessageBody": "b", "DelaySeconds": 1180591620717411303424}]'


@pytest.mark.parametrize(
    ("entries_json", "expected"),
    [
        (DELAY_2_70, "got 1180591620717411303424"),  # orjson reads 2**70 as a float, json as an int
        ('[{"Id": "0", "MessageBody": "b", "DelaySeconds": NaN}]', "got nan"),  # orjson refuses NaN
        ('[{"Id": "0", "MessageBody": "lone \\ud800"}]', "UnicodeEncodeError"),  # orjson refuses it
    ],
)
def test_what_orjson_cannot_read_is_read_by_json(
    server: SqsStandIn, entries_json: str, expected: str
) -> None:
    client = RawClient(server)
    body = batch_body(server, entries_json)
    status, reply = client.call("SendMessageBatch", body)
    state = SqsState(server.endpoint_url)
    state.handle("CreateQueue", {"QueueName": "q"})
    general = state.handle("SendMessageBatch", json.loads(body))
    assert (status, reply) == (general.status, general.document)
    assert expected in json.dumps(reply)
    assert server.bodies("q") == []
    client.close()


def test_requests_in_pieces_and_back_to_back(server: SqsStandIn) -> None:
    client = RawClient(server)
    one = client.request("SendMessageBatch", batch_body(server, '[{"Id": "a", "MessageBody": "first"}]'))
    for i in range(0, len(one), 37):  # many small reads into the shared buffer
        client.sock.sendall(one[i : i + 37])
        time.sleep(0.001)
    assert client.response()[0] == 200
    two = client.request("SendMessageBatch", batch_body(server, '[{"Id": "b", "MessageBody": "second"}]'))
    three = client.request("GetQueueUrl", b'{"QueueName": "q"}')
    client.sock.sendall(two + three)  # one read, two requests: answered in order
    assert client.response()[1]["Successful"][0]["Id"] == "b"
    assert client.response()[1]["QueueUrl"].endswith("/q")
    assert sorted(server.bodies("q")) == ["first", "second"]
    client.close()


def test_latency_delays_every_response() -> None:
    with SqsStandIn(latency_seconds=0.05) as server:
        server.create_queue("q")
        body = batch_body(server, '[{"Id": "a", "MessageBody": "x"}]')
        elapsed: list[float] = []
        lock = threading.Lock()

        def one() -> None:
            client = RawClient(server)
            for _ in range(3):
                started = time.monotonic()
                assert client.call("SendMessageBatch", body)[0] == 200
                with lock:
                    elapsed.append(time.monotonic() - started)
            client.close()

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(elapsed) == 24 and min(elapsed) >= 0.05
        assert len(server.bodies("q")) == 24


def test_a_shorter_delay_is_not_held_behind_a_longer_one() -> None:
    slow_sends = Faults(slow_rate=1.0, slow_seconds=30.0, operations=frozenset({"SendMessage"}))
    with SqsStandIn(latency_seconds=0.01, faults=slow_sends) as server:
        url = server.create_queue("q")
        slow = RawClient(server)
        slow.sock.sendall(
            slow.request("SendMessage", json.dumps({"QueueUrl": url, "MessageBody": "s"}).encode())
        )
        deadline = time.monotonic() + 30
        while server.stats.requests["SendMessage"] == 0:  # queued for 30 s from now
            assert time.monotonic() < deadline
            time.sleep(0.01)
        fast = RawClient(server)
        assert (
            fast.call("SendMessageBatch", batch_body(server, '[{"Id": "a", "MessageBody": "f"}]'))[0] == 200
        )
        assert server.stats.slowed == 1 and sorted(server.bodies("q")) == ["f", "s"]
        fast.close()
        slow.close()


def test_delayed_responses_after_a_restart() -> None:
    server = SqsStandIn(latency_seconds=0.2).start()
    try:
        server.create_queue("q")
        body = batch_body(server, '[{"Id": "a", "MessageBody": "x"}]')
        pending = RawClient(server)
        pending.sock.sendall(pending.request("SendMessageBatch", body))
        deadline = time.monotonic() + 30
        while server.stats.requests["SendMessageBatch"] == 0:  # its answer waits for 0.2 s
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.stop()  # before it is written
        server.start()  # a new loop on the same port, the same queues
        client = RawClient(server)
        assert client.call("SendMessageBatch", body)[0] == 200
        assert server.bodies("q") == ["x", "x"]
        client.close()
        pending.close()
    finally:
        server.stop()


def reference_response(
    conn: _HttpConnection, status: int, reason: str, payload: bytes, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The response bytes as the server has always framed them, line by line."""
    server = conn._server
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/x-amz-json-1.0",
        f"x-amzn-RequestId: 5e5e0000-0000-4000-8000-{id(conn) & 0xFFFFFF:06x}{conn._request_ids:06x}",
        "Connection: close" if conn._close_after else "Connection: keep-alive",
    ]
    if server.keep_alive_timeout_seconds is not None and not conn._close_after:
        lines.append(f"Keep-Alive: timeout={server.keep_alive_timeout_seconds:g}")
    lines += [f"{name}: {value}" for name, value in headers]
    if server.chunked_responses and payload:
        half = len(payload) // 2 or len(payload)
        framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in (payload[:half], payload[half:]) if c)
        lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + framed + b"0\r\nX-Trailer: t\r\n\r\n"
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@pytest.mark.parametrize("keep_alive", [None, 2.5])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("close", [False, True])
def test_response_framing(keep_alive: float | None, chunked: bool, close: bool) -> None:
    server = SqsStandIn(keep_alive_timeout_seconds=keep_alive, chunked_responses=chunked)
    conn = _HttpConnection(server)
    conn._close_after = close
    cases = [(200, "OK", b'{"a":1}', ()), (200, "OK", b"", ()), (400, "Bad Request", b"{}", (("x-h", "v"),))]
    for number in (1, 0xABCDEF, 0x1234567):
        for status, reason, payload, headers in cases:
            conn._request_ids = number - 1
            got = conn._encode(status, payload, headers)
            assert got == reference_response(conn, status, reason, payload, headers)


def every_line(text: str) -> dict[str, str]:
    """A request head read line by line, every header kept."""
    lines = text.split("\r\n")
    head = {":method": lines[0].split(" ", 1)[0].upper()}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        head[name.strip().lower()] = value.strip()
    return head


CHARACTERS = [
    "\r\n",
    "\r",
    "\n",
    " ",
    "\t",
    ":",
    "\x85",
    "\xa0",
    "\x1c",
    "\x0b",
    "a",
    "X",
    "c",
    "T",
    ";",
    "0",
]
WORDS = [
    "close",
    "x-amz-target",
    "X-Amz-Target",
    "Connection",
    "Transfer-Encoding",
    "chunked",
    "Content-Length",
]
LINES = ["POST / HTTP/1.1", "GET", "Host: h", "Authorization: x;x-amz-target"]
KNOWN: dict[str, tuple[str, str]] = {}  # head lines, remembered across examples
head_pieces = st.sampled_from([*CHARACTERS, *WORDS, *LINES]) | st.characters(max_codepoint=255)


@settings(max_examples=1500, deadline=None)
@given(text=st.lists(head_pieces, max_size=30).map("".join))
@example(
    text="POST / HTTP/1.1\r\n Content-Length : 5\r\nconnection\r\nX-Amz-Target:a:b\r\n\tx-amz-target: B "
)
def test_head_parse_reads_what_every_line_gives(text: str) -> None:
    want = every_line(text)
    for known in ({}, KNOWN, KNOWN):  # afresh, and with the lines of earlier heads remembered
        got = _parse_head(text, known)
        for name in (":method", *_READ_HEADERS):
            assert got.get(name) == want.get(name)
