"""FastSender over real HTTP: the stand-in server, a moto server, TLS, broken connections."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.sqs_fixtures import set_loopback_aws_env
from tq_orchestrate.backends._aws import AwsTarget, resolve_settings
from tq_orchestrate.backends._http11 import HttpResponse
from tq_orchestrate.backends._sqs.protocol import batch_failures
from tq_orchestrate.backends.base import EntryFailure, SendOutcome
from tq_orchestrate.backends.sqs_fast import FastSender, open_pool, sqs_error
from tq_orchestrate.errors import BackendError, ConfigurationError
from tq_orchestrate.testing import Faults, SqsStandIn
from tq_orchestrate.testing.sqs_state import md5_hex


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_loopback_aws_env(monkeypatch, tmp_path)


def target_for(queue_url: str, endpoint_url: str) -> AwsTarget:
    return resolve_settings(queue_url, endpoint_url=endpoint_url).target(queue_url, endpoint_url)


class Outcomes:
    """Collects ``done`` calls and checks each batch got exactly one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_batch: dict[int, list[SendOutcome]] = {}

    def callback(self, batch: int) -> Callable[[SendOutcome], None]:
        def done(outcome: SendOutcome) -> None:
            with self.lock:
                self.by_batch.setdefault(batch, []).append(outcome)

        return done

    def single(self, batches: int) -> list[SendOutcome]:
        assert sorted(self.by_batch) == list(range(batches))
        assert all(len(v) == 1 for v in self.by_batch.values()), "done must run exactly once per batch"
        return [self.by_batch[i][0] for i in range(batches)]


def make_batches(count: int, tag: str = "") -> list[list[str]]:
    """Unique JSON-ish bodies, 1-10 per batch, some non-ASCII and some large."""
    out = []
    n = 0
    for b in range(count):
        size = 1 + (b * 7) % 10
        batch = []
        for _ in range(size):
            extra = "é✓😀" if n % 13 == 0 else ("x" * 5000 if n % 29 == 0 else "")
            batch.append(
                json.dumps({"class": "PrintTask", "n": n, "tag": tag, "txt": extra}, ensure_ascii=False)
            )
            n += 1
        out.append(batch)
    return out


def send_all(sender: FastSender, batches: list[list[str]], delay: float = 0) -> list[SendOutcome]:
    outcomes = Outcomes()
    for i, bodies in enumerate(batches):
        sender.submit(bodies, delay, outcomes.callback(i))
    sender.close()
    return outcomes.single(len(batches))


def receive_all(endpoint_url: str, queue_url: str) -> list[str]:
    """Receive (and delete) until the queue reports nothing left."""
    client = boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1")
    bodies: list[str] = []
    empty = 0
    while empty < 2:
        messages = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        for m in messages:
            assert m["MD5OfBody"] == md5_hex(m["Body"])
            bodies.append(m["Body"])
        if messages:
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
    client.close()
    return bodies


@pytest.fixture
def standin() -> Iterator[SqsStandIn]:
    with SqsStandIn() as server:
        yield server


# -- against the stand-in -------------------------------------------------------------


def test_every_body_arrives_exactly_once(standin: SqsStandIn) -> None:
    url = standin.create_queue("fast")
    batches = make_batches(150)
    sender = FastSender(target_for(url, standin.endpoint_url), concurrency=8)
    outcomes = send_all(sender, batches)
    assert outcomes == [[] for _ in batches]
    sent = [b for batch in batches for b in batch]
    assert Counter(receive_all(standin.endpoint_url, url)) == Counter(sent)
    assert standin.stats.requests["SendMessageBatch"] == len(batches)


def test_connections_open_as_batches_go_out_not_up_front(standin: SqsStandIn) -> None:
    """A small upload with the default cap (256) opens a connection per batch in flight, no more."""
    url = standin.create_queue("few")
    sender = FastSender(target_for(url, standin.endpoint_url))
    assert sender.connections_opened == 0
    outcomes = send_all(sender, make_batches(3))
    assert outcomes == [[], [], []]
    assert 1 <= sender.connections_opened <= 3


def test_connections_opened_ahead_are_used_not_added_to(standin: SqsStandIn) -> None:
    """A pool warmed for 5 batches (open_pool(warm=5)) sends them on those connections."""
    url = standin.create_queue("ahead")
    target = target_for(url, standin.endpoint_url)
    pool = open_pool(target, 8, warm=5)
    sender = FastSender(target, concurrency=8, pool=pool)
    outcomes = send_all(sender, make_batches(5))
    assert outcomes == [[] for _ in range(5)]
    assert sender.connections_opened == 5
    assert standin.stats.requests["SendMessageBatch"] == 5


def test_connections_opened_ahead_to_nowhere_leave_requests_to_connect() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    url = f"http://127.0.0.1:{port}/000000000000/gone"
    target = target_for(url, f"http://127.0.0.1:{port}")
    sender = FastSender(target, concurrency=4, pool=open_pool(target, 4, warm=4))
    outcomes = send_all(sender, make_batches(2))
    assert all(isinstance(o, BackendError) and o.retryable for o in outcomes)


def test_server_closing_keep_alive_connections(standin: SqsStandIn) -> None:
    url = standin.create_queue("closing")
    standin.faults = Faults(close_after_requests=3, operations=frozenset())
    batches = make_batches(60)
    outcomes = send_all(FastSender(target_for(url, standin.endpoint_url), concurrency=4), batches)
    assert outcomes == [[] for _ in batches]
    assert Counter(standin.bodies("closing")) == Counter(b for batch in batches for b in batch)
    stats = standin.stats
    assert stats.closed >= 60 // 3 - 4
    assert stats.connections >= 60 // 3


def test_idle_connection_not_reused_past_server_keep_alive() -> None:
    """The server closes idle connections after its advertised Keep-Alive timeout;
    a request sent right then must go on a new connection, not into the closing one."""
    with SqsStandIn(keep_alive_timeout_seconds=0.5) as server:
        url = server.create_queue("keepalive")
        sender = FastSender(target_for(url, server.endpoint_url), concurrency=1)
        outcomes: list[SendOutcome] = []
        for i in range(4):
            done = threading.Event()
            sender.submit([f"m{i}"], 0, lambda o, done=done: (outcomes.append(o), done.set()))
            assert done.wait(30)
            time.sleep(0.5)  # the scenario: idle exactly as long as the server allows
        sender.close()
        assert outcomes == [[], [], [], []]
        assert sender.connections_opened == 4
        assert sorted(server.bodies("keepalive")) == ["m0", "m1", "m2", "m3"]


def test_chunked_responses() -> None:
    with SqsStandIn(chunked_responses=True) as server:
        url = server.create_queue("chunked")
        batches = make_batches(20)
        outcomes = send_all(FastSender(target_for(url, server.endpoint_url), concurrency=3), batches)
        assert outcomes == [[] for _ in batches]
        assert len(server.bodies("chunked")) == sum(map(len, batches))


def test_failed_entries_are_reported_not_assumed_sent(standin: SqsStandIn) -> None:
    url = standin.create_queue("failing")
    standin.faults = Faults(fail_entry=lambda body: body in ('{"n": 3}', '{"n": 4}'))
    batch = [json.dumps({"n": i}) for i in range(10)]
    (outcome,) = send_all(FastSender(target_for(url, standin.endpoint_url), concurrency=2), [batch])
    assert isinstance(outcome, list)
    assert [(f.index, f.code, f.retryable) for f in outcome] == [
        (3, "InternalError", True),
        (4, "InternalError", True),
    ]
    assert sorted(standin.bodies("failing")) == sorted(b for i, b in enumerate(batch) if i not in (3, 4))


def test_invalid_body_is_a_sender_fault(standin: SqsStandIn) -> None:
    url = standin.create_queue("invalid")
    (outcome,) = send_all(
        FastSender(target_for(url, standin.endpoint_url), 1), [["ok", "bad\x00body", "ok2"]]
    )
    assert isinstance(outcome, list)
    assert [(f.index, f.code, f.retryable) for f in outcome] == [(1, "InvalidMessageContents", False)]


def test_md5_mismatch_is_a_retryable_failure(standin: SqsStandIn) -> None:
    url = standin.create_queue("md5")
    standin.faults = Faults(bad_md5_rate=1.0)
    (outcome,) = send_all(FastSender(target_for(url, standin.endpoint_url), 1), [["a", "b", "c"]])
    assert isinstance(outcome, list)
    assert [(f.index, f.code, f.retryable) for f in outcome] == [(i, "MD5Mismatch", True) for i in range(3)]


@pytest.mark.parametrize(
    ("faults", "retryable", "fragment"),
    [
        (Faults(throttle_rate=1.0), True, "ThrottlingException"),
        (Faults(error_rate=1.0), True, "HTTP 500"),
        (Faults(drop_before_rate=1.0), True, "may have been processed"),
        (Faults(drop_after_rate=1.0), True, "may have been processed"),
    ],
)
def test_request_failures_become_backend_errors(
    standin: SqsStandIn, faults: Faults, retryable: bool, fragment: str
) -> None:
    url = standin.create_queue("faulty")
    standin.faults = faults
    outcomes = send_all(FastSender(target_for(url, standin.endpoint_url), 2), [["a"], ["b"], ["c"]])
    for outcome in outcomes:
        assert isinstance(outcome, BackendError)
        assert outcome.retryable is retryable
        assert fragment in str(outcome)
        assert "testing" not in str(outcome)  # no credentials in messages
    dropped_after = faults.drop_after_rate == 1.0
    assert sorted(standin.bodies("faulty")) == (["a", "b", "c"] if dropped_after else [])


def test_missing_queue_is_not_retryable(standin: SqsStandIn) -> None:
    url = f"{standin.endpoint_url}/000000000000/absent"
    (outcome,) = send_all(FastSender(target_for(url, standin.endpoint_url), 1), [["a"]])
    assert isinstance(outcome, BackendError)
    assert not outcome.retryable
    assert "QueueDoesNotExist" in str(outcome)


def test_slow_response_times_out(standin: SqsStandIn) -> None:
    url = standin.create_queue("slow")
    standin.faults = Faults(slow_rate=1.0, slow_seconds=5.0)
    sender = FastSender(target_for(url, standin.endpoint_url), 1, read_timeout_seconds=0.3)
    (outcome,) = send_all(sender, [["a"]])
    assert isinstance(outcome, BackendError) and outcome.retryable
    assert "no response within" in str(outcome)


def test_connection_refused_is_reported_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    url = f"{endpoint}/000000000000/q"
    outcomes = send_all(FastSender(target_for(url, endpoint), 2, connect_timeout_seconds=2), [["a"], ["b"]])
    for outcome in outcomes:
        assert isinstance(outcome, BackendError) and outcome.retryable
        assert "cannot connect" in str(outcome)


def test_delay_seconds_reach_the_queue(standin: SqsStandIn) -> None:
    url = standin.create_queue("delayed")
    outcomes = send_all(FastSender(target_for(url, standin.endpoint_url), 2), [["a", "b"], ["c"]], delay=30)
    assert outcomes == [[], []]
    assert standin.counts("delayed") == (0, 0, 3)


def test_submit_after_close_raises(standin: SqsStandIn) -> None:
    url = standin.create_queue("closed")
    sender = FastSender(target_for(url, standin.endpoint_url), 1)
    sender.close()
    with pytest.raises(RuntimeError):
        sender.submit(["a"], 0, lambda outcome: None)


def test_bad_batch_size_reported_through_done(standin: SqsStandIn) -> None:
    url = standin.create_queue("sizes")
    outcomes = send_all(FastSender(target_for(url, standin.endpoint_url), 1), [[f"m{i}" for i in range(11)]])
    assert isinstance(outcomes[0], ConfigurationError)


# -- signing and configuration ------------------------------------------------------------


def request_headers(request: bytes) -> dict[str, str]:
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    return dict(line.split(": ", 1) for line in head.split("\r\n")[1:])


def test_request_uses_current_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-one")
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    settings = resolve_settings(url)
    target = settings.target(url, "https://sqs.eu-west-1.amazonaws.com")
    sender = FastSender(target, 1)
    first = request_headers(sender.build_request(["a"]))
    assert first["X-Amz-Security-Token"] == "token-one"
    assert first["Host"] == "sqs.eu-west-1.amazonaws.com"
    assert (
        "Credential=testing/" in first["Authorization"]
        and "/eu-west-1/sqs/aws4_request" in first["Authorization"]
    )
    settings.session.set_credentials("ROTATED", "secret2", "token-two")
    second = request_headers(sender.build_request(["a"]))
    assert second["X-Amz-Security-Token"] == "token-two"
    assert "Credential=ROTATED/" in second["Authorization"]
    sender.close()


def test_request_body_is_the_json_protocol() -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    sender = FastSender(target_for(url, "https://sqs.us-east-1.amazonaws.com"), 1)
    request = sender.build_request(['{"a": "é"}', "two"], 5)
    head, body = request.split(b"\r\n\r\n", 1)
    headers = request_headers(request)
    assert head.startswith(b"POST / HTTP/1.1\r\n")
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["X-Amz-Target"] == "AmazonSQS.SendMessageBatch"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {
        "QueueUrl": url,
        "Entries": [
            {"Id": "0", "MessageBody": '{"a": "é"}', "DelaySeconds": 5},
            {"Id": "1", "MessageBody": "two", "DelaySeconds": 5},
        ],
    }
    sender.close()


@pytest.mark.parametrize("name", ["jobs", "jobs.fifo"])
@pytest.mark.parametrize("delay", [0, 0.5, 7, 900])
def test_same_entries_as_the_boto3_engine(name: str, delay: float) -> None:
    from tq_orchestrate.backends.sqs import SQSBackend

    url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
    backend = SQSBackend.from_url(url, deduplication="content")
    bodies = ['{"task": 1}', "two ✓", '"three"\n']
    fifo = name.endswith(".fifo")
    sender = FastSender(backend.target, 1, fifo_ids=backend.fifo_ids if fifo else None)
    if fifo and delay:
        with pytest.raises(ConfigurationError):
            backend.build_entries(bodies, delay)
        with pytest.raises(ConfigurationError):
            sender.build_body(bodies, delay)
    else:
        assert json.loads(sender.build_body(bodies, delay)) == {
            "QueueUrl": url,
            "Entries": backend.build_entries(bodies, delay),
        }
    sender.close()
    backend.close()


def test_fifo_needs_ids_and_sends_them() -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"
    target = target_for(url, "https://sqs.us-east-1.amazonaws.com")
    with pytest.raises(ConfigurationError, match="FIFO"):
        FastSender(target, 1)
    sender = FastSender(target, 1, fifo_ids=lambda body: ("g", md5_hex(body)))
    body = json.loads(sender.build_body(["x"]))
    assert body["Entries"] == [
        {"Id": "0", "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": md5_hex("x")}
    ]
    sender.close()


def test_plain_http_to_a_remote_host_is_refused() -> None:
    url = "http://sqs.internal.example/123456789012/jobs"
    target = resolve_settings(url, allow_insecure_http=True).target(url, "http://sqs.internal.example")
    with pytest.raises(ConfigurationError, match="http"):
        FastSender(target, 1)
    FastSender(target, 1, allow_insecure_http=True).close()


def test_proxy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    with pytest.raises(ConfigurationError, match="proxy"):
        FastSender(target_for(url, "https://sqs.us-east-1.amazonaws.com"), 1)


# -- response parsing ------------------------------------------------------------------------


def test_parse_reports_missing_and_sender_faults() -> None:
    bodies = ["a", "b", "c", "d"]
    response = {
        "Successful": [
            {"Id": "0", "MessageId": "m", "MD5OfMessageBody": md5_hex("a")},
            {"Id": "3", "MessageId": "n"},
        ],
        "Failed": [{"Id": "1", "Code": "InvalidMessageContents", "Message": "no", "SenderFault": True}],
    }
    assert batch_failures(json.loads(json.dumps(response)), bodies) == [
        EntryFailure(1, "InvalidMessageContents", "no", retryable=False),
        EntryFailure(2, "MissingFromResponse", "the response does not list this entry", retryable=True),
    ]


def test_empty_response_means_nothing_was_sent() -> None:
    failures = batch_failures({}, ["a", "b"])
    assert [f.index for f in failures] == [0, 1]
    assert all(f.retryable for f in failures)


@pytest.mark.parametrize(
    ("status", "document", "header", "retryable"),
    [
        (400, {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "slow"}, "", True),
        (
            400,
            {"__type": "com.amazonaws.sqs#QueueDoesNotExist"},
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
            False,
        ),
        (400, {"__type": "com.amazonaws.sqs#X"}, "AWS.SimpleQueueService.RequestThrottled;Sender", True),
        (403, {"__type": "InvalidClientTokenId", "message": "bad"}, "", False),
        (503, {}, "", True),
        (429, {}, "", True),
    ],
)
def test_error_classification(status: int, document: dict[str, Any], header: str, retryable: bool) -> None:
    headers = {"x-amzn-query-error": header} if header else {}
    error = sqs_error(HttpResponse(status, headers, json.dumps(document).encode()), "q")
    assert error.retryable is retryable
    assert f"HTTP {status}" in str(error)


# -- moto server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.slow
def test_moto_server_receives_every_body_once(moto_endpoint: str) -> None:
    client = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = client.create_queue(QueueName="fast-moto")["QueueUrl"]
    client.close()
    batches = make_batches(25, tag="moto")
    outcomes = send_all(FastSender(target_for(url, moto_endpoint), concurrency=4), batches)
    assert outcomes == [[] for _ in batches]
    assert Counter(receive_all(moto_endpoint, url)) == Counter(b for batch in batches for b in batch)


@pytest.mark.slow
def test_moto_server_reports_missing_queue(moto_endpoint: str) -> None:
    url = f"{moto_endpoint}/123456789012/never-created"
    (outcome,) = send_all(FastSender(target_for(url, moto_endpoint), 1), [["a"]])
    assert isinstance(outcome, BackendError) and not outcome.retryable


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tq-orchestrate test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_standin(tls_files: tuple[Path, Path]) -> Iterator[SqsStandIn]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    with SqsStandIn(ssl_context=context) as server:
        yield server


def test_tls_with_ca_bundle(
    tls_standin: SqsStandIn, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_files[0]))
    url = tls_standin.create_queue("secure")
    assert url.startswith("https://127.0.0.1:")
    batches = make_batches(30, tag="tls")
    outcomes = send_all(FastSender(target_for(url, tls_standin.endpoint_url), concurrency=3), batches)
    assert outcomes == [[] for _ in batches]
    assert Counter(tls_standin.bodies("secure")) == Counter(b for batch in batches for b in batch)


def test_tls_rejects_an_unknown_certificate(tls_standin: SqsStandIn) -> None:
    url = tls_standin.create_queue("untrusted")
    (outcome,) = send_all(FastSender(target_for(url, tls_standin.endpoint_url), 1), [["a"]])
    assert isinstance(outcome, BackendError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(outcome) or "certificate" in str(outcome).lower()
    assert tls_standin.bodies("untrusted") == []
