"""Both upload engines and the boto3 backend against a second, independent SQS: local-aws-sqs.

``local-aws-sqs`` is an npm package (Node >= 20) that serves the AWS JSON 1.0 SQS
protocol and keeps state. It is declared in ``package.json``; install it with
``npm ci`` in the repository root. Without it these tests skip, except under
``CI=true``, where a missing or broken install fails them.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from tests.backends.test_sqs_contract import SQSContract
from tests.sample_tasks import PrintTask
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures used by name
from tq_orchestrate import TaskQueue, UploadError
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.backends.sqs_fast import FastSender
from tq_orchestrate.errors import BackendError

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0
ENGINES = ["boto3", "fast"]
_names = itertools.count()

# Starts the server on 127.0.0.1 and a free port, prints its URL, and exits on
# SIGTERM or when the test process goes away (its stdin closes).
SERVER_SCRIPT = """
const { createSqsServer } = require("local-aws-sqs");
createSqsServer({ port: 0, hostname: "127.0.0.1", emulateQueueCreationLifecycle: false })
  .then((server) => { console.log("http://127.0.0.1:" + server.address().port); })
  .catch((error) => { console.error(error); process.exit(1); });
process.on("SIGTERM", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
"""


def _unavailable(reason: str) -> None:
    message = (
        f"local-aws-sqs cannot start: {reason}. Install it with `npm ci` in the repository root (Node >= 20)."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def local_aws_sqs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a local-aws-sqs server started for this session."""
    node = shutil.which("node")
    if node is None:
        _unavailable("no `node` on PATH")
    if not (ROOT / "node_modules" / "local-aws-sqs" / "package.json").is_file():
        _unavailable("node_modules/local-aws-sqs is missing")
    log = tmp_path_factory.mktemp("local-aws-sqs") / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [str(node), "-e", SERVER_SCRIPT],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(
        target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True
    ).start()
    try:
        url = lines.get(timeout=START_SECONDS).strip()
    except queue.Empty:
        url = ""
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        proc.wait(10)
        _unavailable(
            f"no URL within {START_SECONDS:g} s (exit code {proc.returncode}): {log.read_text()[-2000:]}"
        )
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdin is not None:
            proc.stdin.close()
        proc.stdout.close()


@pytest.fixture
def endpoint(local_aws_sqs: str, aws_env: Path) -> str:
    """The server URL, with dummy credentials in a clean AWS environment."""
    return local_aws_sqs


def create_queue(endpoint: str, prefix: str, **attributes: str) -> str:
    client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    name = f"{prefix}-{os.getpid()}-{next(_names)}"
    if attributes.get("FifoQueue") == "true":
        name += ".fifo"
    url = str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    client.close()
    return url


def lease_all(tq: TaskQueue, expected: int) -> list[Any]:
    """Lease (then delete) until ``expected`` tasks came back and one more try finds none."""
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = tq.receive(10, lease_seconds=120)
        if not messages:
            if len(got) >= expected:
                break
            time.sleep(0.05)
            continue
        got.extend(tq.decode(m) for m in messages)
        assert tq.delete([m.handle for m in messages]) == len(messages)
    return got


@pytest.mark.parametrize("engine", ENGINES)
def test_insert_then_lease_every_task_once(endpoint: str, engine: str) -> None:
    url = create_queue(endpoint, f"insert-{engine}")
    with TaskQueue(url, engine=engine, progress=False) as tq:
        assert tq.insert_all(PrintTask(f"t{i}") for i in range(357)) == 357
        leased = lease_all(tq, 357)
        assert Counter(t.txt for t in leased) == Counter(f"t{i}" for i in range(357))
        assert tq.is_empty()


@pytest.mark.parametrize("engine", ENGINES)
def test_insert_with_delay(endpoint: str, engine: str) -> None:
    url = create_queue(endpoint, f"delay-{engine}")
    with TaskQueue(url, engine=engine, progress=False) as tq:
        assert tq.insert_all([PrintTask("later"), PrintTask("later too")], delay_seconds=60) == 2
        counts = tq.counts()
        assert (counts.delayed, counts.visible) == (2, 0)
        assert tq.receive(10, lease_seconds=30) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_insert_into_fifo_queue(endpoint: str, engine: str) -> None:
    url = create_queue(endpoint, f"fifo-{engine}", FifoQueue="true")
    with TaskQueue(url, engine=engine, progress=False) as tq:
        assert tq.insert_all(PrintTask(f"f{i}") for i in range(25)) == 25
        leased = lease_all(tq, 25)
        assert sorted(t.txt for t in leased) == sorted(f"f{i}" for i in range(25))


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_queue_fails_loudly(endpoint: str, engine: str) -> None:
    url = f"{endpoint}/123456789012/never-created-{engine}"
    with (
        TaskQueue(url, engine=engine, progress=False) as tq,
        pytest.raises((UploadError, BackendError)) as info,
    ):
        tq.insert_all(PrintTask(f"x{i}") for i in range(15))
    assert (
        "NonExistentQueue" in str(info.value)
        or "QueueDoesNotExist" in str(info.value)
        or "does not exist" in str(info.value)
    )


@pytest.mark.slow
def test_fast_sender_reconnects_after_server_idle_timeout(endpoint: str) -> None:
    """Node closes idle keep-alive connections after 5 s; the sender must open new ones."""
    url = create_queue(endpoint, "idle")
    backend = SQSBackend.from_url(url)
    sender = FastSender(backend.target, 2)
    results: list[Any] = []
    done = threading.Event()

    def record(outcome: Any) -> None:
        results.append(outcome)
        done.set()

    sender.submit(["first"], 0, record)
    assert done.wait(30)
    opened = sender.connections_opened
    time.sleep(6.0)  # the scenario (idle past the server's keep-alive timeout), not a proof
    done.clear()
    sender.submit(["second"], 0, record)
    assert done.wait(30)
    sender.close()
    assert results == [[], []]
    assert sender.connections_opened == opened + 1
    with TaskQueue(url, progress=False) as tq:
        assert sorted(m.body for m in tq.receive(10, lease_seconds=30)) == ["first", "second"]
    backend.close()


_COUNTS_RELEASE_AS_RECEIVE = pytest.mark.xfail(
    strict=True,
    reason="local-aws-sqs 2.0.2 adds one to ApproximateReceiveCount on ChangeMessageVisibility(0)",
)


class TestLocalAwsSqsContract(SQSContract):
    """The backend contract against local-aws-sqs (engine="auto": the fast worker calls).

    Where local-aws-sqs differs from SQS, the test is marked as an expected failure
    with the reason, so a fix on either side shows up.
    """

    timeout_seconds: ClassVar[float] = 5.0  # its counts do not lag; failures need not wait 20 s

    @pytest.mark.xfail(strict=True, reason="local-aws-sqs 2.0.2 counts in-flight messages as visible too")
    def test_counts(self, backend: SQSBackend) -> None:
        super().test_counts(backend)

    @pytest.mark.xfail(strict=True, reason="local-aws-sqs 2.0.2 empties a purged queue only after 60 s")
    def test_purge(self, backend: SQSBackend) -> None:
        super().test_purge(backend)

    @_COUNTS_RELEASE_AS_RECEIVE
    def test_change_lease_zero_releases_now(self, backend: SQSBackend) -> None:
        super().test_change_lease_zero_releases_now(backend)

    @_COUNTS_RELEASE_AS_RECEIVE
    def test_dead_letter_after_max_receives_and_redrive(self, backend: SQSBackend) -> None:
        super().test_dead_letter_after_max_receives_and_redrive(backend)

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Iterator[SQSBackend]:
        endpoint = request.getfixturevalue("endpoint")
        name = f"contract-{os.getpid()}-{next(_names)}"
        b = SQSBackend.from_url(
            f"sqs://{name}", endpoint_url=endpoint, create=True, max_receives=self.max_receives
        )
        assert b.call_engine == "fast"  # engine="auto": receive, delete and change_lease skip botocore
        yield b
        b.close()
