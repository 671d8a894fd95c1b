"""The in-memory SQS stand-in behaves like SQS where our code depends on it."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from botocore.exceptions import ClientError

import tq_orchestrate
from tests.backends.test_sqs_contract import SQSContract
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures used by name
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.testing import SqsStandIn
from tq_orchestrate.testing.sqs_state import SqsState, md5_hex

_names = itertools.count()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> SqsState:
    return SqsState("http://127.0.0.1:1", clock=clock)


def call(state: SqsState, operation: str, **params: Any) -> dict[str, Any]:
    reply = state.handle(operation, params)
    assert reply.status == 200, reply.document
    return reply.document


def counts(state: SqsState, url: str) -> tuple[int, int, int]:
    a = call(state, "GetQueueAttributes", QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (
        int(a["ApproximateNumberOfMessages"]),
        int(a["ApproximateNumberOfMessagesNotVisible"]),
        int(a["ApproximateNumberOfMessagesDelayed"]),
    )


def test_visibility_timeout_and_receipts(state: SqsState, clock: FakeClock) -> None:
    url = call(state, "CreateQueue", QueueName="q")["QueueUrl"]
    sent = call(state, "SendMessageBatch", QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "one"}])
    assert sent["Successful"][0]["MD5OfMessageBody"] == md5_hex("one")
    (first,) = call(state, "ReceiveMessage", QueueUrl=url, VisibilityTimeout=10)["Messages"]
    assert counts(state, url) == (0, 1, 0)
    assert "Messages" not in call(state, "ReceiveMessage", QueueUrl=url)
    clock.now += 10
    (second,) = call(state, "ReceiveMessage", QueueUrl=url, VisibilityTimeout=10, AttributeNames=["All"])[
        "Messages"
    ]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # the stale receipt neither deletes nor renews
    call(state, "DeleteMessage", QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert counts(state, url) == (0, 1, 0)
    stale = state.handle(
        "ChangeMessageVisibility",
        {"QueueUrl": url, "ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 5},
    )
    assert stale.status == 400 and stale.document["__type"].endswith("MessageNotInflight")
    call(
        state,
        "ChangeMessageVisibility",
        QueueUrl=url,
        ReceiptHandle=second["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    assert counts(state, url) == (1, 0, 0)
    call(state, "DeleteMessage", QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert counts(state, url) == (0, 0, 0)


def test_delays_and_purge(state: SqsState, clock: FakeClock) -> None:
    url = call(state, "CreateQueue", QueueName="d")["QueueUrl"]
    call(state, "SendMessage", QueueUrl=url, MessageBody="later", DelaySeconds=30)
    call(state, "SendMessage", QueueUrl=url, MessageBody="now")
    assert counts(state, url) == (1, 0, 1)
    clock.now += 30
    assert counts(state, url) == (2, 0, 0)
    call(state, "PurgeQueue", QueueUrl=url)
    assert counts(state, url) == (0, 0, 0)
    assert state.bodies("d") == []


def test_queue_default_delay_and_explicit_zero(state: SqsState, clock: FakeClock) -> None:
    url = call(state, "CreateQueue", QueueName="slow", Attributes={"DelaySeconds": "60"})["QueueUrl"]
    entries = [
        {"Id": "default", "MessageBody": "uses the queue's delay"},
        {"Id": "zero", "MessageBody": "explicit zero", "DelaySeconds": 0},
        {"Id": "own", "MessageBody": "own delay", "DelaySeconds": 5},
    ]
    assert len(call(state, "SendMessageBatch", QueueUrl=url, Entries=entries)["Successful"]) == 3
    assert counts(state, url) == (1, 0, 2)
    clock.now += 5
    assert counts(state, url) == (2, 0, 1)
    clock.now += 55
    assert counts(state, url) == (3, 0, 0)


def test_redrive_to_dead_letter_queue(state: SqsState, clock: FakeClock) -> None:
    dlq = call(state, "CreateQueue", QueueName="q-dlq")["QueueUrl"]
    arn = call(state, "GetQueueAttributes", QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    url = call(state, "CreateQueue", QueueName="q", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    call(state, "SendMessage", QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        assert len(call(state, "ReceiveMessage", QueueUrl=url, VisibilityTimeout=1)["Messages"]) == 1
        clock.now += 1
    assert "Messages" not in call(state, "ReceiveMessage", QueueUrl=url)
    assert state.bodies("q-dlq") == ["poison"] and state.bodies("q") == []
    assert counts(state, dlq) == (1, 0, 0)


def test_batch_validation(state: SqsState) -> None:
    url = call(state, "CreateQueue", QueueName="v")["QueueUrl"]
    too_many = state.handle(
        "SendMessageBatch",
        {"QueueUrl": url, "Entries": [{"Id": str(i), "MessageBody": "x"} for i in range(11)]},
    )
    assert too_many.status == 400 and "TooManyEntries" in too_many.document["__type"]
    twins = state.handle(
        "SendMessageBatch", {"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x"}] * 2}
    )
    assert "BatchEntryIdsNotDistinct" in twins.document["__type"]
    big = state.handle(
        "SendMessageBatch",
        {"QueueUrl": url, "Entries": [{"Id": str(i), "MessageBody": "x" * 200_000} for i in range(6)]},
    )
    assert "BatchRequestTooLong" in big.document["__type"]
    assert state.bodies("v") == []


def test_fifo_deduplication(state: SqsState) -> None:
    url = call(state, "CreateQueue", QueueName="f.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    entry = {"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}
    a = call(state, "SendMessageBatch", QueueUrl=url, Entries=[{"Id": "0", **entry}])["Successful"][0]
    b = call(state, "SendMessageBatch", QueueUrl=url, Entries=[{"Id": "0", **entry}])["Successful"][0]
    assert a["MessageId"] == b["MessageId"]
    assert state.bodies("f.fifo") == ["x"]
    no_group = call(state, "SendMessageBatch", QueueUrl=url, Entries=[{"Id": "0", "MessageBody": "y"}])
    assert no_group["Failed"][0]["Code"] == "MissingParameter"


# -- over HTTP with boto3 ----------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqsStandIn, Any]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with SqsStandIn() as server:
        sqs = boto3.client("sqs", endpoint_url=server.endpoint_url, region_name="us-east-1")
        yield server, sqs
        sqs.close()


def test_boto3_round_trip(client: tuple[SqsStandIn, Any]) -> None:
    server, sqs = client
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == url
    entries = [{"Id": str(i), "MessageBody": f"task {i} ✓"} for i in range(10)]
    assert len(sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]) == 10
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
    assert sorted(m["Body"] for m in got) == sorted(e["MessageBody"] for e in entries)
    deleted = sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    )
    assert len(deleted["Successful"]) == 10
    assert server.counts("jobs") == (0, 0, 0)


def test_boto3_sees_sqs_error_codes(client: tuple[SqsStandIn, Any]) -> None:
    _, sqs = client
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="missing")
    url = sqs.create_queue(QueueName="e")["QueueUrl"]
    with pytest.raises(ClientError) as info:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="nonsense", VisibilityTimeout=3)
    assert info.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_long_polling_returns_when_a_message_arrives(client: tuple[SqsStandIn, Any]) -> None:
    server, sqs = client
    url = sqs.create_queue(QueueName="lp")["QueueUrl"]
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - started >= 0.9
    import threading

    sender = threading.Timer(
        0.3, lambda: server.call(lambda: server._state.send_message({"QueueUrl": url, "MessageBody": "hi"}))
    )
    sender.start()
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    sender.join()
    assert [m["Body"] for m in messages] == ["hi"]


def test_command_line_server() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tq_orchestrate.testing.sqs_server", "--queue", "cli", "--latency-ms", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        url = sqs.get_queue_url(QueueName="cli")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="x")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
        sqs.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Warning" not in err


# -- the backend contract against the stand-in -----------------------------------------------


@pytest.fixture(scope="module")
def contract_server() -> Iterator[SqsStandIn]:
    with SqsStandIn() as server:
        yield server


class TestStandInContract(SQSContract):
    """The SQS backend's contract suite passes against the stand-in (its counts are exact)."""

    timeout_seconds: ClassVar[float] = 5.0

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest, contract_server: SqsStandIn) -> Iterator[SQSBackend]:
        request.getfixturevalue("aws_env")
        name = f"contract-{next(_names)}"
        b = SQSBackend.from_url(
            f"sqs://{name}",
            endpoint_url=contract_server.endpoint_url,
            create=True,
            max_receives=self.max_receives,
        )
        assert b.call_engine == "fast"  # engine="auto": receive, delete and change_lease skip botocore
        yield b
        b.close()


def test_the_runtime_core_never_imports_the_stand_in() -> None:
    """tq_orchestrate.testing is an optional part: no module outside it imports it."""
    package = Path(tq_orchestrate.__file__).parent
    importers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "testing" not in path.relative_to(package).parts
        and re.search(r"^\s*(from|import)\s+(tq_orchestrate\.testing|\.+testing)\b", path.read_text(), re.M)
    ]
    assert importers == []
    code = (
        "import sys, tq_orchestrate, tq_orchestrate.backends.sqs, tq_orchestrate.backends.sqs_fast\n"
        "assert not [m for m in sys.modules if m.startswith('tq_orchestrate.testing')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
