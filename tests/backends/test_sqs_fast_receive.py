"""The fast engine's worker calls (receive, delete, change_lease) without botocore.

Against the stand-in and a moto server: same results and same requests as the
boto3 engine, the same error translation, reconnects, threads and fork.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sqs_fixtures import (  # noqa: F401 - fixtures used by name
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    unique_queue_name,
)
from tq_orchestrate.backends import _http11
from tq_orchestrate.backends._http11 import HttpResponse
from tq_orchestrate.backends._sqs.protocol import ErrorReply
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.backends.sqs_fast import FastClient
from tq_orchestrate.errors import BackendError, LeaseLostError, QueueNotFoundError
from tq_orchestrate.testing import Faults, SqsStandIn
from tq_orchestrate.testing.sqs_state import Reply

ENGINES = ("fast", "boto3")


@pytest.fixture
def standin(aws_env: Path) -> Iterator[SqsStandIn]:
    with SqsStandIn() as server:
        yield server


def open_backend(endpoint: str, engine: str = "auto", **options: Any) -> SQSBackend:
    return SQSBackend.from_url(
        f"sqs://{unique_queue_name('fr')}", endpoint_url=endpoint, create=True, engine=engine, **options
    )


def fill(backend: SQSBackend, count: int, tag: str = "t") -> list[str]:
    bodies = [f'{{"{tag}": {i}, "text": "caf\u00e9 \U0001f600"}}' for i in range(count)]
    for start in range(0, count, 10):
        assert backend.send_batch(bodies[start : start + 10]) == []
    return bodies


def drain(backend: SQSBackend, expected: int) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        got += backend.receive(10, 60, wait_seconds=1)
    return got


# -- round trips against real servers ----------------------------------------------


@pytest.fixture(params=["standin", "moto"])
def endpoint(request: pytest.FixtureRequest) -> str:
    if request.param == "moto":
        return str(request.getfixturevalue("moto_server"))
    return request.getfixturevalue("standin").endpoint_url


def test_auto_resolves_to_fast_and_round_trips(endpoint: str) -> None:
    backend = open_backend(endpoint)
    assert backend.call_engine == "fast"
    bodies = fill(backend, 25)
    got = drain(backend, 25)
    assert sorted(m.body for m in got) == sorted(bodies)
    assert all(m.receive_count == 1 for m in got)
    assert len({m.message_id for m in got}) == 25
    first = got[0]
    backend.change_lease(first.handle, 0)  # back now, received a second time
    again = drain(backend, 1)
    assert [(m.message_id, m.receive_count) for m in again] == [(first.message_id, 2)]
    handles = [m.handle for m in got[1:]] + [again[0].handle]
    assert backend.delete(handles) == 25  # three DeleteMessageBatch chunks
    assert backend.receive(10, 60) == []
    backend.close()


def test_long_poll_returns_a_message_sent_while_waiting(endpoint: str) -> None:
    backend = open_backend(endpoint, engine="fast")
    sender = SQSBackend.from_url(backend.queue_url, endpoint_url=endpoint, engine="boto3")
    timer = threading.Timer(0.5, lambda: sender.send_batch(["late"]))
    timer.start()
    try:
        got = backend.receive(1, 60, wait_seconds=10)
    finally:
        timer.join()
    assert [m.body for m in got] == ["late"]
    backend.close()
    sender.close()


def test_lost_lease_and_missing_queue(endpoint: str) -> None:
    backend = open_backend(endpoint, engine="fast")
    fill(backend, 1)
    (message,) = drain(backend, 1)
    assert backend.delete([message.handle]) == 1
    with pytest.raises(LeaseLostError):
        backend.change_lease("not-a-receipt-handle", 30)
    missing = SQSBackend.from_url(backend.queue_url + "-gone", endpoint_url=endpoint, engine="fast")
    for call in (
        lambda: missing.receive(1, 30),
        lambda: missing.delete([message.handle]),
        lambda: missing.change_lease(message.handle, 30),
    ):
        with pytest.raises(QueueNotFoundError):
            call()
    missing.close()
    backend.close()


def test_dead_letters_still_work_beside_fast_receives(endpoint: str) -> None:
    backend = open_backend(endpoint, engine="fast", max_receives=3)
    fill(backend, 2)
    got = drain(backend, 2)
    backend.dead_letter(got[0].handle, "boom")
    assert backend.delete([got[1].handle]) == 1
    (letter,) = backend.dead_letters()
    assert (letter.body, letter.error, letter.message_id) == (got[0].body, "boom", got[0].message_id)
    assert backend.redrive() == 1
    assert [m.body for m in drain(backend, 1)] == [got[0].body]
    backend.close()


# -- the same requests and results as botocore ----------------------------------------


def record_requests(monkeypatch: pytest.MonkeyPatch, server: SqsStandIn) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    handle = server._state.handle

    def recording(operation: str, params: dict[str, Any]) -> Reply:
        seen.append((operation, dict(params)))
        return handle(operation, params)

    monkeypatch.setattr(server._state, "handle", recording)
    return seen


def test_same_requests_and_messages_as_boto3(standin: SqsStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_requests(monkeypatch, standin)
    results: dict[str, list[Any]] = {}
    for engine in ENGINES:
        backend = open_backend(standin.endpoint_url, engine=engine)
        assert backend.call_engine == engine
        fill(backend, 3)
        del seen[:]
        got = backend.receive(10, 45.2, wait_seconds=0.5)
        backend.change_lease(got[0].handle, 7)
        assert backend.delete([m.handle for m in got]) == 3
        requests = [(op, {k: v for k, v in p.items() if k != "QueueUrl"}) for op, p in seen]
        assert all(p["QueueUrl"] == backend.queue_url for _, p in seen)
        results[engine] = [requests, [(m.body, m.receive_count) for m in got]]
        backend.close()

    def without_handles(requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        out = []
        for op, params in requests:
            params = dict(params)
            params.pop("ReceiptHandle", None)
            if "Entries" in params:
                params["Entries"] = [e["Id"] for e in params["Entries"]]
            out.append((op, params))
        return out

    fast, boto = results["fast"], results["boto3"]
    assert [op for op, _ in fast[0]] == ["ReceiveMessage", "ChangeMessageVisibility", "DeleteMessageBatch"]
    assert without_handles(fast[0]) == without_handles(boto[0])
    receive = fast[0][0][1]
    assert receive["MessageSystemAttributeNames"] == receive["AttributeNames"]
    assert receive["VisibilityTimeout"] == 46 and receive["WaitTimeSeconds"] == 1
    assert fast[1] == boto[1]


@pytest.mark.parametrize("engine", ENGINES)
def test_damaged_body_is_skipped(
    standin: SqsStandIn, monkeypatch: pytest.MonkeyPatch, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = open_backend(standin.endpoint_url, engine=engine)
    fill(backend, 2)
    handle = standin._state.handle

    def damage(operation: str, params: dict[str, Any]) -> Reply:
        reply = handle(operation, params)
        if operation == "ReceiveMessage":
            reply.document["Messages"][0]["MD5OfBody"] = "0" * 32
        return reply

    monkeypatch.setattr(standin._state, "handle", damage)
    got = backend.receive(10, 60)
    assert len(got) == 1
    assert "MD5OfBody mismatch" in caplog.text
    backend.close()


# -- error translation ---------------------------------------------------------------------


def failure(server: SqsStandIn, engine: str, faults: Faults, call: str) -> BaseException:
    backend = open_backend(server.endpoint_url, engine=engine, max_attempts=1)
    fill(backend, 1)
    (message,) = drain(backend, 1)
    server.faults = faults
    try:
        with pytest.raises(BackendError) as caught:
            if call == "receive":
                backend.receive(1, 30)
            elif call == "delete":
                backend.delete([message.handle])
            else:
                backend.change_lease(message.handle, 30)
    finally:
        server.faults = Faults()
        backend.close()
    return caught.value


def without_queue(error: BaseException) -> str:
    """The error text after the ``<queue>: `` prefix (each engine used its own queue)."""
    return str(error).split(": ", 1)[1]


_OPS = frozenset({"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibility"})


@pytest.mark.parametrize("call", ["receive", "delete", "change_lease"])
@pytest.mark.parametrize(
    "faults",
    [Faults(throttle_rate=1.0, operations=_OPS), Faults(error_rate=1.0, operations=_OPS)],
    ids=["throttled", "internal-error"],
)
def test_server_errors_translate_like_boto3(standin: SqsStandIn, faults: Faults, call: str) -> None:
    fast = failure(standin, "fast", faults, call)
    boto = failure(standin, "boto3", faults, call)
    assert type(fast) is type(boto) is BackendError
    assert isinstance(fast, BackendError) and isinstance(boto, BackendError)
    assert fast.retryable and boto.retryable
    assert without_queue(fast) == without_queue(boto)


@pytest.mark.parametrize("call", ["receive", "delete", "change_lease"])
def test_dropped_connection_is_retryable(standin: SqsStandIn, call: str) -> None:
    for engine in ENGINES:
        error = failure(standin, engine, Faults(drop_before_rate=1.0, operations=_OPS), call)
        assert type(error) is BackendError and error.retryable, engine


def test_client_errors_are_not_retryable(standin: SqsStandIn) -> None:
    errors = []
    for engine in ENGINES:
        backend = open_backend(standin.endpoint_url, engine=engine)
        with pytest.raises(BackendError) as caught:
            backend._call("ReceiveMessage", MaxNumberOfMessages=11)
        errors.append(caught.value)
        backend.close()
    assert not any(e.retryable for e in errors)  # type: ignore[attr-defined]
    assert without_queue(errors[0]) == without_queue(errors[1])
    assert "InvalidParameterValue" in str(errors[0])


def test_transient_errors_are_retried_up_to_max_attempts(standin: SqsStandIn) -> None:
    backend = open_backend(standin.endpoint_url, engine="fast", max_attempts=10)
    fill(backend, 20)
    standin.faults = Faults(throttle_rate=0.2, error_rate=0.1, drop_before_rate=0.1, operations=_OPS, seed=3)
    got = drain(backend, 20)
    assert backend.delete([m.handle for m in got]) == 20
    stats = standin.stats
    assert stats.throttled + stats.errors + stats.dropped_before > 0
    assert sorted(Counter(m.message_id for m in got).values()) == [1] * 20
    backend.close()


def test_error_reply_fields() -> None:
    response = HttpResponse(
        400,
        {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender", "x-amzn-requestid": "r1"},
        b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}',
    )
    error = ErrorReply.from_json(response.status, response.headers, response.body)
    assert (error.code, error.query_code, error.fault, error.message) == (
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "Sender",
        "gone",
    )
    assert error.status == 400
    assert error.request_id == "r1"
    plain = ErrorReply.from_json(503, {}, b"<html>busy</html>")
    assert plain.code == "503"


# -- connections ------------------------------------------------------------------------


def test_reconnects_when_the_server_closes_connections(aws_env: Path) -> None:
    with SqsStandIn(faults=Faults(close_after_requests=2)) as server:
        backend = open_backend(server.endpoint_url, engine="fast")
        fill(backend, 30)
        got = drain(backend, 30)
        for m in got:
            backend.change_lease(m.handle, 60)
        assert backend.delete([m.handle for m in got]) == 30
        fast = backend._connections.fast_client()
        assert fast is not None and fast.connections_opened >= 10
        backend.close()


def test_resends_on_an_idle_connection_the_server_dropped(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ignore the server's Keep-Alive hint, so the request meets a connection it closed
    monkeypatch.setattr(_http11, "keep_alive_limit", lambda header, default: default)
    with SqsStandIn(keep_alive_timeout_seconds=0.2) as server:
        backend = open_backend(server.endpoint_url, engine="fast", max_attempts=1)  # no retry: a resend
        fill(backend, 1)
        assert backend.receive(1, 0) != []
        closed = server.stats.closed
        deadline = time.monotonic() + 10
        while server.stats.closed == closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats.closed > closed
        assert len(drain(backend, 1)) == 1
        fast = backend._connections.fast_client()
        assert fast is not None and fast.connections_opened == 2
        backend.close()


def test_long_poll_outlasts_the_read_timeout(standin: SqsStandIn) -> None:
    url = standin.create_queue("quiet")
    backend = SQSBackend.from_url(url, engine="fast")
    target = backend.target
    client = FastClient(target, read_timeout_seconds=0.3, max_attempts=1)
    params = {"QueueUrl": url, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 1}
    assert client.call("ReceiveMessage", params, wait_seconds=1) == {}
    client.close()
    backend.close()


def test_threads_share_one_backend(standin: SqsStandIn) -> None:
    backend = open_backend(standin.endpoint_url, engine="fast")
    fill(backend, 200)
    seen: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                got = backend.receive(3, 60)
                if not got:
                    return
                for m in got:
                    backend.change_lease(m.handle, 60)
                assert backend.delete([m.handle for m in got]) == len(got)
                with lock:
                    seen.extend(m.message_id for m in got)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(seen) == len(set(seen)) == 200
    fast = backend._connections.fast_client()
    assert fast is not None and fast.connections_opened <= 7
    backend.close()


def _child(backend: SQSBackend, out: Any) -> None:
    got = backend.receive(10, 60)
    out.put((backend.call_engine, len(got), backend.delete([m.handle for m in got])))


def test_fork_child_opens_its_own_connections(standin: SqsStandIn) -> None:
    filler = open_backend(standin.endpoint_url, engine="boto3")
    fill(filler, 20)
    filler.close()
    backend = SQSBackend.from_url(filler.queue_url, engine="fast")  # no botocore call needed
    first = backend.receive(10, 60)  # the parent's connection is open now
    opened = standin.stats.connections
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child, args=(backend, out))
    child.start()
    result = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert result == ("fast", 10, 10)
    assert standin.stats.connections == opened + 1  # the child's own
    assert backend.delete([m.handle for m in first]) == 10  # the parent's connection still works
    assert backend.receive(10, 60) == []
    assert standin.stats.connections == opened + 1
    fast = backend._connections.fast_client()
    assert fast is not None and fast.connections_opened == 1
    backend.close()


def test_credentials_are_fetched_for_every_request(
    standin: SqsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = open_backend(standin.endpoint_url, engine="fast")
    fast = backend._connections.fast_client()
    assert fast is not None
    fetched = []
    original = fast._credentials

    def counting() -> Any:
        fetched.append(1)
        return original()

    monkeypatch.setattr(fast, "_credentials", counting)
    backend.receive(1, 30)
    backend.receive(1, 30)
    backend.delete(["x"])
    assert len(fetched) == 3
    backend.close()


def test_a_thread_that_ends_closes_its_connection(standin: SqsStandIn) -> None:
    backend = open_backend(standin.endpoint_url, engine="fast")
    fill(backend, 5)
    fast = backend._connections.fast_client()
    assert fast is not None
    for _ in range(5):  # e.g. one heartbeat thread per poll: connections must not pile up
        thread = threading.Thread(target=lambda: backend.receive(1, 60))
        thread.start()
        thread.join(30)
        gc.collect()
        assert fast.connections == 0
    assert fast.connections_opened == 5
    backend.receive(1, 60)
    assert fast.connections == 1
    backend.close()
    assert fast.connections == 0
