"""Both SQS engines on the same inputs: one reply parser, one clamp, one error mapping.

Each case runs through the boto3 engine (botocore's Stubber) and through the
fast engine (its sender's reply handling and request builder), and both must
give the same answer. The cases are the ones where the engines used to differ:
reply ids that name no entry sent, an entry listed as ``Failed`` and also as
``Successful`` with a wrong MD5, and negative fractional delays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures used by name
from tq_orchestrate.backends._aws import resolve_settings
from tq_orchestrate.backends._http11 import HttpResponse
from tq_orchestrate.backends._sqs import protocol
from tq_orchestrate.backends._sqs.protocol import ErrorReply, batch_failures, body_md5, error_for
from tq_orchestrate.backends._sqs.retry import RetryPolicy
from tq_orchestrate.backends.base import EntryFailure
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.backends.sqs_fast import FastSender
from tq_orchestrate.errors import BackendError, ConfigurationError, LeaseLostError, QueueNotFoundError

AWS_URL = "https://sqs.eu-central-1.amazonaws.com/123456789012/stubbed"
LOOPBACK_URL = "http://127.0.0.1:9/000000000000/stubbed"

Send = Callable[[list[str], dict[str, Any]], list[EntryFailure]]
"""Sends bodies through one engine, the server replying with the given document."""


@pytest.fixture(params=["boto3", "fast"])
def send(request: pytest.FixtureRequest, aws_env: object) -> Iterator[Send]:
    if request.param == "boto3":
        backend = SQSBackend.from_url(AWS_URL, engine="boto3", max_attempts=1)
        with Stubber(backend.client) as stub:

            def through_boto3(bodies: list[str], reply: dict[str, Any]) -> list[EntryFailure]:
                full = {"Successful": [], "Failed": [], **reply}  # botocore's model requires both
                stub.add_response("send_message_batch", full, {"QueueUrl": AWS_URL, "Entries": ANY})
                return backend.send_batch(bodies)

            yield through_boto3
        backend.close()
        return
    target = resolve_settings(LOOPBACK_URL).target(LOOPBACK_URL, "http://127.0.0.1:9")
    sender = FastSender(target, 1)

    def through_fast(bodies: list[str], reply: dict[str, Any]) -> list[EntryFailure]:
        outcome = sender._outcome(bodies, HttpResponse(200, {}, json.dumps(reply).encode()))
        assert isinstance(outcome, list), outcome
        return outcome

    yield through_fast
    sender.close()


def ok(index: int, body: str) -> dict[str, Any]:
    return {"Id": str(index), "MessageId": f"m{index}", "MD5OfMessageBody": body_md5(body)}


def test_ids_that_name_no_entry_are_ignored_and_the_entries_reported_missing(send: Send) -> None:
    reply = {
        "Successful": [ok(0, "a"), {"Id": "7", "MessageId": "m7", "MD5OfMessageBody": body_md5("b")}],
        "Failed": [{"Id": "12", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "x"}],
    }
    assert [(f.index, f.code, f.retryable) for f in send(["a", "b", "c"], reply)] == [
        (1, "MissingFromResponse", True),
        (2, "MissingFromResponse", True),
    ]


def test_ids_that_are_not_numbers_are_ignored(send: Send) -> None:
    reply = {"Successful": [ok(0, "a"), {"Id": "one", "MessageId": "m1", "MD5OfMessageBody": "0" * 32}]}
    assert [(f.index, f.code) for f in send(["a", "b"], reply)] == [(1, "MissingFromResponse")]


def test_failed_wins_over_a_successful_listing_with_a_wrong_md5(send: Send) -> None:
    reply = {
        "Successful": [ok(0, "a"), {"Id": "1", "MessageId": "m1", "MD5OfMessageBody": body_md5("not b")}],
        "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"}],
    }
    assert send(["a", "b"], reply) == [EntryFailure(1, "InvalidMessageContents", "bad", retryable=False)]


def test_md5_mismatch_and_missing_entries(send: Send) -> None:
    reply = {"Successful": [ok(0, "a"), {"Id": "1", "MessageId": "m1", "MD5OfMessageBody": body_md5("x")}]}
    assert send(["a", "b", "c"], reply) == [
        EntryFailure(1, "MD5Mismatch", protocol.MD5_MISMATCH),
        EntryFailure(2, "MissingFromResponse", protocol.NOT_LISTED),
    ]


def test_lone_surrogates_have_one_md5(send: Send) -> None:
    body = "a\udc80b"
    assert send([body], {"Successful": [ok(0, body)]}) == []


# -- delays ----------------------------------------------------------------------------------------


@pytest.fixture(params=["boto3", "fast"])
def build(request: pytest.FixtureRequest, aws_env: object) -> Iterator[Callable[[float], Any]]:
    if request.param == "boto3":
        backend = SQSBackend.from_url(AWS_URL, engine="boto3")
        yield lambda delay: backend.build_entries(["a"], delay)[0]["DelaySeconds"]
        return
    target = resolve_settings(LOOPBACK_URL).target(LOOPBACK_URL, "http://127.0.0.1:9")
    sender = FastSender(target, 1)
    yield lambda delay: json.loads(sender.build_body(["a"], delay))["Entries"][0]["DelaySeconds"]
    sender.close()


@pytest.mark.parametrize(("delay", "sent"), [(0, 0), (0.2, 1), (2.5, 3), (900, 900)])
def test_delays_round_up_in_both_engines(build: Callable[[float], Any], delay: float, sent: int) -> None:
    assert build(delay) == sent


@pytest.mark.parametrize("delay", [-0.5, -1e-9, -1, 900.5, float("nan"), float("inf")])
def test_delays_out_of_range_are_refused_by_both_engines(build: Callable[[float], Any], delay: float) -> None:
    with pytest.raises(ConfigurationError, match="delay_seconds"):
        build(delay)


# -- pure functions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "lease"), [(-5, 0), (0, 0), (0.1, 1), (29.5, 30), (43200, 43200), (10**6, 43200)]
)
def test_lease_clamp(value: float, lease: int) -> None:
    assert protocol.lease_seconds(value) == lease


@pytest.mark.parametrize(("value", "wait"), [(-1, 0), (0, 0), (0.5, 1), (20, 20), (600, 20)])
def test_wait_clamp(value: float, wait: int) -> None:
    assert protocol.wait_seconds(value) == wait


def test_fifo_entries_carry_the_ids_and_refuse_delays() -> None:
    entries = protocol.send_entries(["a", "b"], fifo_ids=lambda body: ("g", f"d-{body}"), queue="q.fifo")
    assert entries[1] == {
        "Id": "1",
        "MessageBody": "b",
        "MessageGroupId": "g",
        "MessageDeduplicationId": "d-b",
    }
    with pytest.raises(ConfigurationError, match=r"FIFO queue 'q\.fifo' does not accept"):
        protocol.send_entries(["a"], 1, fifo_ids=lambda body: ("g", "d"), queue="q.fifo")


@pytest.mark.parametrize("count", [0, 11])
def test_batches_hold_one_to_ten_entries(count: int) -> None:
    with pytest.raises(ConfigurationError, match="1 to 10"):
        protocol.send_entries(["a"] * count)


@pytest.mark.parametrize(
    ("reply", "kind", "retryable"),
    [
        (
            ErrorReply(400, "AWS.SimpleQueueService.NonExistentQueue", "gone", "QueueDoesNotExist"),
            QueueNotFoundError,
            None,
        ),
        (ErrorReply(400, "ReceiptHandleIsInvalid", "old"), LeaseLostError, False),
        (ErrorReply(400, "InvalidParameterValue", "receipt handle has expired"), LeaseLostError, False),
        (ErrorReply(400, "ThrottlingException", "slow"), BackendError, True),
        (ErrorReply(400, "X", "slow", "AWS.SimpleQueueService.RequestThrottled"), BackendError, True),
        (ErrorReply(503, "503", ""), BackendError, True),
        (ErrorReply(429, "TooMany", ""), BackendError, True),
        (ErrorReply(403, "AccessDenied", "no"), BackendError, False),
    ],
)
def test_one_error_mapping(reply: ErrorReply, kind: type[Exception], retryable: bool | None) -> None:
    error = error_for(reply, "ChangeMessageVisibility", "q")
    assert type(error) is kind
    if retryable is not None:
        assert isinstance(error, BackendError) and error.retryable is retryable


def test_a_reply_that_is_not_an_object_is_unreadable() -> None:
    with pytest.raises(AttributeError):
        batch_failures([], ["a"])  # type: ignore[arg-type]


# -- retry policy ----------------------------------------------------------------------------------


def test_retry_policy_retries_only_retryable_backend_errors() -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, initial_seconds=0.5, max_seconds=1.0)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise BackendError("busy", queue="q", retryable=True)
        return "done"

    assert policy.retrying(sleep=slept.append)(flaky) == "done"
    assert len(calls) == 3 and len(slept) == 2 and all(0 <= s <= 1.0 for s in slept)
    calls.clear()

    def fatal() -> str:
        calls.append(1)
        raise BackendError("no", queue="q", retryable=False)

    with pytest.raises(BackendError, match="no"):
        policy.retrying(sleep=slept.append)(fatal)
    assert len(calls) == 1


def test_retry_policy_gives_up_after_its_attempts() -> None:
    policy = RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.01)
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise BackendError("busy", queue="q", retryable=True)

    with pytest.raises(BackendError, match="busy"):
        policy.retrying(sleep=lambda s: None)(always)
    assert len(calls) == 2


def test_retry_policy_call_tries_first_then_continues_the_same_policy() -> None:
    policy = RetryPolicy(attempts=3, initial_seconds=0.5, max_seconds=1.0)
    slept: list[float] = []
    calls: list[int] = []
    assert policy.call(lambda: calls.append(1) or "first", sleep=slept.append) == "first"
    assert calls == [1] and slept == []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise BackendError("busy", queue="q", retryable=True)
        return "done"

    assert policy.call(flaky, sleep=slept.append) == "done"  # attempts 1, 2 fail; 3 works
    assert len(calls) == 4 and len(slept) == 2 and all(0 <= s <= 1.0 for s in slept)

    def always() -> None:
        calls.append(1)
        raise BackendError("busy", queue="q", retryable=True)

    calls.clear()
    with pytest.raises(BackendError, match="busy"):
        policy.call(always, sleep=slept.append)
    assert len(calls) == 3  # the policy's attempts, the first one included

    def fatal() -> None:
        calls.append(1)
        raise BackendError("no", queue="q", retryable=False)

    calls.clear()
    with pytest.raises(BackendError, match="busy"):
        RetryPolicy(attempts=1).call(always)  # a single attempt: never retried
    with pytest.raises(BackendError, match="no"):
        policy.call(fatal)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "bad", [{"attempts": 0}, {"initial_seconds": 0}, {"max_seconds": 0.1, "initial_seconds": 1}]
)
def test_retry_policy_checks_its_parameters(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**bad)
