"""SQS backend specifics: URLs, options, error translation, batch failures, FIFO, dead letters."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from botocore.stub import ANY, Stubber

from tests.sqs_fixtures import (  # noqa: F401 - fixtures used by name
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    fixture_moto_sqs,
    unique_queue_name,
)
from tq_orchestrate.backends import ThreadSender, open_backend
from tq_orchestrate.backends import sqs as sqs_module
from tq_orchestrate.backends._aws import is_loopback_host, parse_queue_url
from tq_orchestrate.backends.base import SendOutcome
from tq_orchestrate.backends.sqs import SQSBackend, ensure_queue_pair
from tq_orchestrate.errors import (
    BackendError,
    ConfigurationError,
    LeaseLostError,
    QueueNotFoundError,
)

AWS_URL = "https://sqs.eu-central-1.amazonaws.com/123456789012/stubbed"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def receive_all(backend: SQSBackend, lease_seconds: float = 60) -> list[str]:
    """Receive until an empty answer; return the bodies (leased, not deleted)."""
    bodies: list[str] = []
    while batch := backend.receive(10, lease_seconds):
        bodies += [m.body for m in batch]
    return bodies


# -- URLs and options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "name", "queue_url", "region", "endpoint"),
    [
        ("sqs://jobs", "jobs", None, None, None),
        ("sqs://jobs.fifo", "jobs.fifo", None, None, None),
        (
            "https://sqs.eu-west-2.amazonaws.com/123456789012/jobs",
            "jobs",
            "https://sqs.eu-west-2.amazonaws.com/123456789012/jobs",
            "eu-west-2",
            None,
        ),
        (
            "sqs://https://sqs.ap-south-1.amazonaws.com/123456789012/jobs",
            "jobs",
            "https://sqs.ap-south-1.amazonaws.com/123456789012/jobs",
            "ap-south-1",
            None,
        ),
        (
            "https://us-west-1.queue.amazonaws.com/123456789012/legacy",
            "legacy",
            "https://us-west-1.queue.amazonaws.com/123456789012/legacy",
            "us-west-1",
            None,
        ),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs",
            "jobs",
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs",
            "cn-north-1",
            None,
        ),
        (
            "http://127.0.0.1:4566/000000000000/local",
            "local",
            "http://127.0.0.1:4566/000000000000/local",
            None,
            "http://127.0.0.1:4566",
        ),
        (
            "https://sqs.internal.example:8443/000000000000/q",
            "q",
            "https://sqs.internal.example:8443/000000000000/q",
            None,
            "https://sqs.internal.example:8443",
        ),
    ],
)
def test_parse_queue_url(url: str, name: str, queue_url: str, region: str, endpoint: str) -> None:
    address = parse_queue_url(url)
    assert (address.name, address.queue_url, address.region, address.endpoint_url) == (
        name,
        queue_url,
        region,
        endpoint,
    )
    assert address.fifo == name.endswith(".fifo")


@pytest.mark.parametrize(
    "url",
    [
        "sqs://",
        "sqs://bad name",
        "sqs://" + "x" * 81,
        "https://sqs.us-east-1.amazonaws.com/only-name",
        "ftp://h/1/q",
    ],
)
def test_invalid_queue_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SQSBackend.from_url(url)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("localhost", True), ("[::1]", True), ("10.0.0.1", False),
     ("example.com", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plain_http_to_loopback_is_allowed_elsewhere_refused(aws_env: object) -> None:
    assert SQSBackend.from_url("http://127.0.0.1:9324/000000000000/q").address.name == "q"
    assert SQSBackend.from_url("sqs://q", endpoint_url="http://localhost:9324").options.endpoint_url
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        SQSBackend.from_url("http://10.1.2.3:9324/000000000000/q")
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        SQSBackend.from_url("sqs://q", endpoint_url="http://sqs.example.com")
    allowed = SQSBackend.from_url("http://10.1.2.3:9324/000000000000/q", allow_insecure_http=True)
    assert allowed.target.endpoint_url == "http://10.1.2.3:9324"


def test_plain_http_from_environment_is_refused_at_first_use(
    aws_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://10.1.2.3:9324")
    backend = SQSBackend.from_url("sqs://q")
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        backend.counts()


def test_registry_maps_schemes_to_sqs(aws_env: object) -> None:
    for url in ("sqs://q", AWS_URL, "http://127.0.0.1:9/000000000000/q"):
        assert isinstance(open_backend(url), SQSBackend)


@pytest.mark.parametrize(
    "options",
    [
        {"nonsense": 1},
        {"engine": "turbo"},
        {"region": ""},
        {"max_receives": 0},
        {"max_receives": True},
        {"create": "yes"},
        {"deduplication": "never"},
        {"retry_mode": "eager"},
        {"max_attempts": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQSBackend.from_url("sqs://q", **options)


def test_unknown_queue_names_the_queue(moto_sqs: None) -> None:
    backend = SQSBackend.from_url("sqs://no-such-queue")
    with pytest.raises(QueueNotFoundError, match="no-such-queue"):
        backend.counts()


def test_unknown_queue_url_names_the_queue(moto_sqs: None) -> None:
    backend = SQSBackend.from_url("https://sqs.us-east-1.amazonaws.com/123456789012/gone-queue")
    with pytest.raises(QueueNotFoundError, match="gone-queue"):
        backend.send_batch(["x"])


def test_client_configuration(aws_env: object) -> None:
    backend = SQSBackend.from_url(AWS_URL, retry_mode="adaptive", max_attempts=3)
    config = backend.client.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}
    assert config.tcp_keepalive is True
    assert config.max_pool_connections == 32
    assert backend.client is backend.client  # one client per backend
    sender = backend.open_sender(100)
    try:
        assert isinstance(sender, ThreadSender)
        assert backend.client.meta.config.max_pool_connections == 100
    finally:
        sender.close()


def test_client_is_rebuilt_in_a_forked_child(aws_env: object, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SQSBackend.from_url(AWS_URL)
    parent_client = backend.client
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    child_client = backend.client
    assert child_client is not parent_client
    assert backend.client is child_client
    assert backend.queue_url == AWS_URL


def test_release_all_is_refused_clearly(aws_env: object) -> None:
    with pytest.raises(ConfigurationError, match="in-flight"):
        SQSBackend.from_url(AWS_URL).release_all()


# -- batch results and error translation (botocore Stubber, no network) ---------------


@pytest.fixture
def stubbed(aws_env: object) -> Iterator[tuple[SQSBackend, Stubber]]:
    backend = SQSBackend.from_url(AWS_URL, max_attempts=1)
    with Stubber(backend.client) as stub:
        yield backend, stub
        stub.assert_no_pending_responses()


def test_send_batch_reports_failed_entries(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    bodies = ["a", "b", "c", "d"]
    stub.add_response(
        "send_message_batch",
        {
            "Successful": [
                {"Id": "0", "MessageId": "m0", "MD5OfMessageBody": md5("a")},
                {"Id": "2", "MessageId": "m2", "MD5OfMessageBody": md5("c")},
            ],
            "Failed": [
                {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"},
                {"Id": "3", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad chars"},
            ],
        },
        {
            "QueueUrl": AWS_URL,
            "Entries": [{"Id": str(i), "MessageBody": b, "DelaySeconds": 0} for i, b in enumerate(bodies)],
        },
    )
    failures = backend.send_batch(bodies)
    assert [(f.index, f.code, f.retryable) for f in failures] == [
        (1, "InternalError", True),
        (3, "InvalidMessageContents", False),
    ]
    assert failures[1].message == "bad chars"


def test_send_batch_never_assumes_unmentioned_or_corrupted_entries(
    stubbed: tuple[SQSBackend, Stubber],
) -> None:
    backend, stub = stubbed
    stub.add_response(
        "send_message_batch",
        {
            "Successful": [
                {"Id": "0", "MessageId": "m0", "MD5OfMessageBody": md5("a")},
                {"Id": "1", "MessageId": "m1", "MD5OfMessageBody": md5("not b")},
            ],
            "Failed": [],
        },
        {"QueueUrl": AWS_URL, "Entries": ANY},
    )
    failures = backend.send_batch(["a", "b", "c"])
    assert [(f.index, f.code, f.retryable) for f in failures] == [
        (1, "MD5Mismatch", True),
        (2, "MissingFromResponse", True),
    ]


def test_send_batch_with_delay(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    expected = [{"Id": "0", "MessageBody": "a", "DelaySeconds": 3}]
    stub.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": md5("a")}], "Failed": []},
        {"QueueUrl": AWS_URL, "Entries": expected},
    )
    assert backend.send_batch(["a"], delay_seconds=2.5) == []
    with pytest.raises(ConfigurationError, match="delay_seconds"):
        backend.send_batch(["a"], delay_seconds=901)


def bulk_client(backend: SQSBackend) -> Any:
    """The client the boto3 engine's bulk sender sends with (made by open_sender)."""
    return backend._connections.clients(bulk=True).bulk_client


def send_through(sender: Any, bodies: list[str]) -> SendOutcome:
    outcomes: list[SendOutcome] = []
    sender.submit(bodies, 0, outcomes.append)
    sender.close()
    (outcome,) = outcomes
    return outcome


def test_bulk_sender_client_is_the_main_one_without_parameter_validation(aws_env: object) -> None:
    backend = SQSBackend.from_url(AWS_URL, engine="boto3", retry_mode="adaptive", max_attempts=3)
    backend.open_sender(12).close()
    bulk, main = bulk_client(backend), backend.client
    assert bulk is not main
    assert (bulk.meta.region_name, bulk.meta.endpoint_url) == (main.meta.region_name, main.meta.endpoint_url)
    for config in (bulk.meta.config, main.meta.config):
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}
        assert (config.max_pool_connections, config.tcp_keepalive) == (32, True)
    bad = {"QueueUrl": AWS_URL, "Entries": [{"Id": 0, "MessageBody": "a"}]}  # Id must be a str
    with pytest.raises(botocore.exceptions.ParamValidationError):
        main.send_message_batch(**bad)
    with Stubber(bulk) as stub:
        stub.add_response("send_message_batch", {"Successful": [], "Failed": []}, bad)
        assert bulk.send_message_batch(**bad)["Successful"] == []
    backend.open_sender(12).close()
    assert bulk_client(backend) is bulk  # made once, reused
    backend.open_sender(100).close()
    assert bulk_client(backend) is not bulk  # a larger pool: both clients are remade
    assert bulk_client(backend).meta.config.max_pool_connections == 100
    backend.close()
    assert backend._connections._clients is None


def test_bulk_sender_reports_refused_unmentioned_and_corrupted_entries(aws_env: object) -> None:
    backend = SQSBackend.from_url(AWS_URL, engine="boto3", max_attempts=1)
    sender = backend.open_sender(2)
    bodies = ["a", "b", "c", "d"]
    with Stubber(bulk_client(backend)) as stub:
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [
                    {"Id": "0", "MessageId": "m0", "MD5OfMessageBody": md5("a")},
                    {"Id": "2", "MessageId": "m2", "MD5OfMessageBody": md5("not c")},
                ],
                "Failed": [
                    {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "x"}
                ],
            },
            {
                "QueueUrl": AWS_URL,
                "Entries": [
                    {"Id": str(i), "MessageBody": b, "DelaySeconds": 0} for i, b in enumerate(bodies)
                ],
            },
        )
        outcome = send_through(sender, bodies)
    assert isinstance(outcome, list)
    assert [(f.index, f.code, f.retryable) for f in outcome] == [
        (1, "InvalidMessageContents", False),
        (2, "MD5Mismatch", True),
        (3, "MissingFromResponse", True),
    ]


@pytest.mark.parametrize(
    ("code", "status", "retryable"), [("ThrottlingException", 400, True), ("AccessDenied", 403, False)]
)
def test_bulk_sender_translates_whole_call_errors(
    aws_env: object, code: str, status: int, retryable: bool
) -> None:
    backend = SQSBackend.from_url(AWS_URL, engine="boto3", max_attempts=1)
    sender = backend.open_sender(1)
    with Stubber(bulk_client(backend)) as stub:
        stub.add_client_error("send_message_batch", service_error_code=code, http_status_code=status)
        outcome = send_through(sender, ["a"])
    assert isinstance(outcome, BackendError)
    assert (outcome.retryable, outcome.queue) == (retryable, "stubbed")
    assert code in str(outcome)


def test_a_body_that_is_not_text_is_refused_before_anything_is_sent(
    stubbed: tuple[SQSBackend, Stubber],
) -> None:
    backend, _ = stubbed  # no response queued: a request would fail the test
    with pytest.raises(BackendError, match="message body 1 is bytes, not str") as caught:
        backend.send_batch(["a", b"b"])  # type: ignore[list-item]
    assert not caught.value.retryable
    assert backend.engine == "boto3"  # the fixture's dead proxy rules out the fast engine
    sender = backend.open_sender(1)
    with Stubber(bulk_client(backend)):
        outcome = send_through(sender, ["a", 7])  # type: ignore[list-item]
    assert isinstance(outcome, BackendError)
    assert "message body 1 is int, not str" in str(outcome) and not outcome.retryable


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ThrottlingException", 400, True),
        ("RequestThrottled", 403, True),
        ("AWS.SimpleQueueService.RequestThrottled", 400, True),
        ("ExpiredToken", 400, True),  # signed again with refreshed credentials
        ("TooManyRequestsException", 429, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("InvalidParameterValue", 400, False),
        ("BatchRequestTooLong", 400, False),
        ("AccessDenied", 403, False),
    ],
)
def test_whole_call_errors_are_translated(
    stubbed: tuple[SQSBackend, Stubber], code: str, status: int, retryable: bool
) -> None:
    backend, stub = stubbed
    stub.add_client_error("send_message_batch", service_error_code=code, http_status_code=status)
    with pytest.raises(BackendError) as caught:
        backend.send_batch(["a"])
    assert caught.value.retryable is retryable
    assert code in str(caught.value)
    assert caught.value.queue == "stubbed"


def test_expired_receipt_handle_is_a_lost_lease(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    stub.add_client_error("change_message_visibility", service_error_code="ReceiptHandleIsInvalid")
    stub.add_client_error(
        "change_message_visibility",
        service_error_code="InvalidParameterValue",
        service_message="Value x for parameter ReceiptHandle is invalid. Reason: receipt handle has expired",
    )
    stub.add_client_error("change_message_visibility", service_error_code="MessageNotInflight")
    for _ in range(3):
        with pytest.raises(LeaseLostError):
            backend.change_lease("handle", 10)


def test_change_lease_is_capped_at_twelve_hours(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    stub.add_response(
        "change_message_visibility",
        {},
        {"QueueUrl": AWS_URL, "ReceiptHandle": "h", "VisibilityTimeout": 43200},
    )
    backend.change_lease("h", 10**6)


def test_receive_parameters(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    stub.add_response(
        "receive_message",
        {
            "Messages": [
                {
                    "MessageId": "id-1",
                    "ReceiptHandle": "rh-1",
                    "Body": "payload",
                    "MD5OfBody": md5("payload"),
                    "Attributes": {"ApproximateReceiveCount": "4", "SentTimestamp": "1"},
                }
            ]
        },
        {
            "QueueUrl": AWS_URL,
            "MaxNumberOfMessages": 10,
            "VisibilityTimeout": 31,
            "WaitTimeSeconds": 20,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "AttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ANY,
        },
    )
    (message,) = backend.receive(50, lease_seconds=30.2, wait_seconds=20)
    assert (message.handle, message.body, message.message_id, message.receive_count) == (
        "rh-1",
        "payload",
        "id-1",
        4,
    )


def test_delete_counts_confirmed_and_raises_on_server_failures(stubbed: tuple[SQSBackend, Stubber]) -> None:
    backend, stub = stubbed
    handles = [f"h{i}" for i in range(12)]
    stub.add_response(
        "delete_message_batch",
        {
            "Successful": [{"Id": str(i)} for i in range(9)],
            "Failed": [{"Id": "9", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}],
        },
        {
            "QueueUrl": AWS_URL,
            "Entries": [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[:10])],
        },
    )
    stub.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": "0"}], "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}]},
        {
            "QueueUrl": AWS_URL,
            "Entries": [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[10:])],
        },
    )
    with pytest.raises(BackendError, match="InternalError") as caught:
        backend.delete(handles)
    assert caught.value.retryable
    stub.add_response(
        "delete_message_batch",
        {
            "Successful": [{"Id": "0"}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}],
        },
        {"QueueUrl": AWS_URL, "Entries": ANY},
    )
    assert backend.delete(handles[:2]) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_errors_are_retryable(aws_env: object) -> None:
    port = _closed_port()
    backend = SQSBackend.from_url(f"http://127.0.0.1:{port}/000000000000/q", max_attempts=1)
    with pytest.raises(BackendError) as caught:
        backend.send_batch(["a"])
    assert caught.value.retryable
    assert "SendMessageBatch" in str(caught.value)


# -- against moto -------------------------------------------------------------------


def test_create_option_and_ensure_queue_pair(moto_sqs: None) -> None:
    name = unique_queue_name()
    queue_url, dlq_url = ensure_queue_pair(name, 4)
    assert ensure_queue_pair(name, 4) == (queue_url, dlq_url)
    backend = SQSBackend.from_url(f"sqs://{name}")
    assert backend.queue_url == queue_url
    policy = json.loads(
        backend.client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    assert policy["maxReceiveCount"] == 4
    assert policy["deadLetterTargetArn"].endswith(f":{name}-dlq")
    assert backend.counts().dead == 0

    plain = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True)
    assert plain.counts().dead is None
    with pytest.raises(ConfigurationError, match="dead-letter"):
        plain.dead_letters()
    with pytest.raises(ConfigurationError, match="dead-letter"):
        plain.redrive()


def test_fifo_pair_names(moto_sqs: None) -> None:
    name = unique_queue_name(fifo=True)
    queue_url, dlq_url = ensure_queue_pair(name, 2)
    assert queue_url.endswith(name)
    assert dlq_url.endswith(name.removesuffix(".fifo") + "-dlq.fifo")


def test_fifo_round_trip_keeps_identical_tasks(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name(fifo=True)}", create=True)
    bodies = ["same", "same", "same", "other"]
    assert backend.send_batch(bodies) == []
    assert backend.send_batch(["same"]) == []
    got = receive_all(backend)
    assert Counter(got) == Counter([*bodies, "same"])
    with pytest.raises(ConfigurationError, match="FIFO"):
        backend.send_batch(["late"], delay_seconds=5)


def test_fifo_content_deduplication_collapses_identical_bodies(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(
        f"sqs://{unique_queue_name(fifo=True)}", create=True, deduplication="content"
    )
    assert backend.send_batch(["dup", "dup", "solo"]) == []
    assert backend.send_batch(["dup"]) == []
    assert Counter(receive_all(backend)) == Counter(["dup", "solo"])


def test_fifo_single_group_keeps_order(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(
        f"sqs://{unique_queue_name(fifo=True)}", create=True, message_group_id="one-lane"
    )
    bodies = [f"step {i}" for i in range(15)]
    for start in range(0, 15, 10):
        assert backend.send_batch(bodies[start : start + 10]) == []
    first = backend.receive(10, 60)
    assert [m.body for m in first] == bodies[:10]
    assert backend.receive(10, 60) == []  # the group is locked while its messages are in flight
    assert backend.delete([m.handle for m in first]) == 10
    assert [m.body for m in backend.receive(10, 60)] == bodies[10:]


def test_fifo_ids_spread_over_groups(moto_sqs: None) -> None:
    backend = SQSBackend.from_url("sqs://x.fifo")
    groups = {backend.fifo_ids(f"task {i}")[0] for i in range(400)}
    assert len(groups) == 16
    assert backend.fifo_ids("a")[0] == backend.fifo_ids("a")[0]
    assert backend.fifo_ids("a")[1] != backend.fifo_ids("a")[1]


def test_redrive_policy_moves_a_message_after_max_receives(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True, max_receives=2)
    backend.send_batch(["poison"])
    for attempt in (1, 2):
        (message,) = backend.receive(1, 0)
        assert message.receive_count == attempt
    assert backend.receive(1, 60) == []
    counts = backend.counts()
    assert (counts.pending, counts.dead) == (0, 1)
    (letter,) = backend.dead_letters()
    assert (letter.body, letter.receive_count, letter.error) == ("poison", 2, None)
    assert backend.dead_letters() == [letter]  # peeking leaves it in place
    assert backend.redrive() == 1
    assert backend.counts().dead == 0
    assert [m.body for m in backend.receive(1, 60)] == ["poison"]


def test_dead_letters_oldest_first_and_limited(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True, max_receives=5)
    for i in range(12):
        backend.send_batch([f"bad {i}"])
    received = []
    while batch := backend.receive(10, 60):
        received += batch
    for message in received:
        backend.dead_letter(message.handle, f"error for {message.body}")
    letters = backend.dead_letters(limit=100)
    assert sorted(x.body for x in letters) == sorted(f"bad {i}" for i in range(12))
    assert all(x.error == f"error for {x.body}" for x in letters)
    assert all(x.receive_count == 1 for x in letters)
    timestamps = [x.message_id for x in letters]
    assert len(set(timestamps)) == 12
    assert len(backend.dead_letters(limit=5)) == 5
    with pytest.raises(LeaseLostError):
        backend.dead_letter("never-received", "x")


def test_redrive_leaves_letters_that_failed_after_it_began(
    moto_sqs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True, max_receives=2)
    backend.send_batch(["late failure"])
    (message,) = backend.receive(1, 60)
    backend.dead_letter(message.handle, "boom")
    monkeypatch.setattr(sqs_module, "REDRIVE_CLOCK_SKEW_MS", -3_600_000)  # "began" an hour ago
    assert backend.redrive() == 0
    assert [x.body for x in backend.dead_letters()] == ["late failure"]


def test_fifo_dead_letter_and_redrive(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name(fifo=True)}", create=True, max_receives=3)
    assert backend.send_batch(["bad", "good"]) == []
    received = {m.body: m for m in backend.receive(10, 60)}
    backend.dead_letter(received["bad"].handle, "corrupt")
    assert backend.delete([received["good"].handle]) == 1
    (letter,) = backend.dead_letters()
    assert (letter.body, letter.error, letter.message_id) == ("bad", "corrupt", received["bad"].message_id)
    assert backend.redrive() == 1
    assert [m.body for m in backend.receive(10, 60)] == ["bad"]
    assert backend.counts().dead == 0


def test_purge_falls_back_when_a_purge_is_running(moto_sqs: None) -> None:
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True)
    backend.send_batch(["a", "b"])
    backend.purge()
    backend.send_batch([f"m{i}" for i in range(10)])
    backend.send_batch([f"n{i}" for i in range(3)])
    assert backend.counts().visible == 13
    backend.purge()  # SQS (and moto) refuse a second PurgeQueue within 60 s
    assert backend.counts().pending == 0
    assert backend.receive(10, 60) == []


@pytest.mark.parametrize("engine", ["boto3", "fast", "auto"])
def test_open_sender_engines_deliver_every_body_once(moto_server: str, engine: str) -> None:
    backend = SQSBackend.from_url(
        f"sqs://{unique_queue_name()}", endpoint_url=moto_server, create=True, engine=engine
    )
    outcomes: list[SendOutcome] = []
    bodies = [f"{engine} {i}" for i in range(35)]
    sender = backend.open_sender(4)
    for start in range(0, len(bodies), 10):
        sender.submit(bodies[start : start + 10], 0, outcomes.append)
    sender.close()
    assert outcomes == [[], [], [], []]
    assert Counter(receive_all(backend)) == Counter(bodies)
    backend.close()


def test_auto_engine_is_fast_unless_a_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    backend = SQSBackend.from_url(AWS_URL)
    assert backend.options.engine == "auto" and backend.engine == "fast"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert backend.engine == "boto3"
    assert SQSBackend.from_url(AWS_URL, engine="fast").engine == "fast"


def test_auto_engine_uses_boto3_inside_motos_in_process_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    backend = SQSBackend.from_url(AWS_URL)
    with mock_aws():
        assert backend.engine == "boto3"
