"""Real worker processes (``python -m tq_orchestrate.worker``) on the embedded queue and a moto server.

kill -9 mid-task, SIGTERM mid-task (once and twice), a poison task among good
ones, and a corrupt payload. Tasks record what they did in a file, so the
tests count executions across processes. Waits poll for a condition with a
generous deadline; nothing asserts speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.sqs_fixtures import (  # noqa: F401 - fixtures registered by import
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    unique_queue_name,
)
from tests.tasks_fixture import WorkerAppendTask, WorkerFailTask, WorkerSleepTask, read_lines
from tq_orchestrate import TaskQueue

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0


class WorkerProcess:
    """A worker subprocess whose stderr (JSON log lines) goes to a file."""

    def __init__(self, url: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in wait()/kill()
        cmd = [sys.executable, "-m", "tq_orchestrate.worker", url, "--import", "tests.tasks_fixture"]
        self.proc = subprocess.Popen(
            [*cmd, "--log-json", *args], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if "outcome" in r]


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Started workers; any still running at the end of the test are killed."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def started(path: Path, text: str) -> Callable[[], bool]:
    return lambda: any(line.startswith(f"start {text} ") for line in read_lines(path))


@pytest.fixture(params=["sqlite", "sqs"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty queue with max_receives=3: the embedded queue, or SQS (moto server) with a DLQ."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/q.db?max_receives=3"
    endpoint = request.getfixturevalue("moto_server")
    from tq_orchestrate.backends.sqs import ensure_queue_pair

    url, _ = ensure_queue_pair(unique_queue_name("worker"), 3, endpoint_url=endpoint)
    return url


def spawn(workers: list[WorkerProcess], url: str, tmp_path: Path, *args: str) -> WorkerProcess:
    w = WorkerProcess(url, tmp_path / f"worker{len(workers)}.log", *args)
    workers.append(w)
    return w


def test_kill_9_mid_task_loses_nothing(queue_url: str, tmp_path: Path, workers: list[WorkerProcess]) -> None:
    out = tmp_path / "out.txt"
    with TaskQueue(queue_url, progress=False) as tq:
        tq.insert([WorkerSleepTask(str(out), "k", 1.0)])
    first = spawn(workers, queue_url, tmp_path, "--lease-seconds", "2")
    wait_for(started(out, "k"), "the task to start")
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    # the second worker waits for the lease to run out (up to 30 s), runs the task once and exits
    args = ("--lease-seconds", "2", "--max-tasks", "1", "--empty-for", "30", "--min-backoff", "0.2")
    second = spawn(workers, queue_url, tmp_path, *args)
    assert second.wait() == 0
    lines = read_lines(out)
    assert lines[0] == f"start k {first.pid}"
    assert lines[1:] == [f"start k {second.pid}", f"done k {second.pid}"]  # completed exactly once more
    assert [e["outcome"] for e in second.events()] == ["ok"]
    with TaskQueue(queue_url, progress=False) as tq:
        assert tq.counts().pending == 0


def test_sigterm_mid_task_finishes_it_releases_the_rest_and_exits_0(
    queue_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    out = tmp_path / "out.txt"
    with TaskQueue(queue_url, progress=False) as tq:
        tq.insert(
            [WorkerSleepTask(str(out), "t", 2.0)] + [WorkerAppendTask(str(out), f"a{i}") for i in range(4)]
        )
    w = spawn(workers, queue_url, tmp_path, "--num-tasks", "10")
    wait_for(started(out, "t"), "the task to start")
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=2.0 + DEADLINE) == 0
    assert read_lines(out)[-1] == f"done t {w.pid}"  # finished, not cut short
    assert [e["outcome"] for e in w.events()] == ["ok"]
    with TaskQueue(queue_url, progress=False) as tq:
        tasks = []
        while batch := tq.receive(10, 30, wait_seconds=1):  # released at once, not after the lease
            tasks += [tq.decode(m) for m in batch]
        assert sorted(t.text for t in tasks) == [f"a{i}" for i in range(4)]
        tq.delete(tasks)


def test_a_second_sigterm_exits_at_once_and_hands_the_task_back(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    out = tmp_path / "out.txt"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerSleepTask(str(out), "long", 600.0)])
    w = spawn(workers, url, tmp_path)
    wait_for(started(out, "long"), "the task to start")
    w.signal(signal.SIGTERM)
    wait_for(lambda: "finishing the task in hand" in w.log_path.read_text(), "the first signal to be seen")
    w.signal(signal.SIGTERM)
    assert w.wait() == 128 + signal.SIGTERM
    assert not any(line.startswith("done") for line in read_lines(out))
    with TaskQueue(url, progress=False) as tq:
        counts = tq.counts()
        assert (counts.visible, counts.leased, counts.completed) == (1, 0, 0)


def test_a_poison_task_is_dead_lettered_after_n_receives_while_the_others_complete(
    queue_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    out = tmp_path / "out.txt"
    good = [WorkerAppendTask(str(out), f"g{i}") for i in range(30)]
    with TaskQueue(queue_url, progress=False) as tq:
        tq.insert([WorkerFailTask(str(out), "poison"), *good])
    args = ("--retry-delay", "0", "--lease-seconds", "5", "--empty-for", "3", "--min-backoff", "0.2")
    pair = [spawn(workers, queue_url, tmp_path, "--num-tasks", str(n), *args) for n in (1, 10)]
    codes = [w.wait() for w in pair]
    # a burst worker exits 3 exactly when a task it took failed
    assert codes == [3 if any(e["outcome"] == "error" for e in w.events()) else 0 for w in pair]
    assert 3 in codes
    lines = read_lines(out)
    assert sorted(x for x in lines if x.startswith("g")) == sorted(t.text for t in good)
    assert lines.count("fail poison") == 3
    with TaskQueue(queue_url, progress=False) as tq:
        dead = tq.dead_letters()
        assert [json.loads(d.body)["payload"]["class"] for d in dead] == ["WorkerFailTask"]
        assert tq.counts().pending == 0
    errors = [e for w in pair for e in w.events() if e["outcome"] == "error"]
    assert len(errors) == 3 and all("always fails" in e["error"] for e in errors)


def test_a_corrupt_payload_is_dead_lettered_with_its_raw_text(
    queue_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    out = tmp_path / "out.txt"
    raw = '{"payload": {"class": "WorkerAppendTask", "path": "/nowhere"'
    with TaskQueue(queue_url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), "before")])
        tq.backend.send_batch([raw])
        tq.insert([WorkerAppendTask(str(out), "after")])
    w = spawn(workers, queue_url, tmp_path, "--num-tasks", "10", "--empty-for", "2", "--min-backoff", "0.2")
    assert w.wait() == 3  # a burst that dead-lettered a message
    assert sorted(read_lines(out)) == ["after", "before"]
    assert "0 task runs failed and 1 corrupt message dead-lettered" in w.log_path.read_text()
    assert raw in w.log_path.read_text().replace('\\"', '"')
    assert sorted(e["outcome"] for e in w.events()) == ["dead_lettered", "ok", "ok"]
    with TaskQueue(queue_url, progress=False) as tq:
        dead = tq.dead_letters()
        assert [d.body for d in dead] == [raw]
        assert dead[0].error is not None and "corrupt payload" in dead[0].error
        assert tq.counts().pending == 0


POLL_SCRIPT = """
import signal, sys
from tq_orchestrate import TaskQueue
import tests.tasks_fixture

marker = lambda signum, frame: None
signal.signal(signal.SIGTERM, marker)
tq = TaskQueue(sys.argv[1], progress=False)
executed = tq.poll(lease_seconds=60, num_tasks=10, handle_sigterm=sys.argv[2] == "on")
print("returned", executed, signal.getsignal(signal.SIGTERM) is marker, flush=True)
"""


def _poll_process(url: str, handle: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", POLL_SCRIPT, url, handle],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigterm_stops_tq_poll_after_the_task_in_hand_and_restores_the_handler(tmp_path: Path) -> None:
    out, url = tmp_path / "out.txt", f"sqlite://{tmp_path}/q.db"
    with TaskQueue(url, progress=False) as tq:
        tq.insert(
            [WorkerSleepTask(str(out), "t", 2.0)] + [WorkerAppendTask(str(out), f"a{i}") for i in range(4)]
        )
    proc = _poll_process(url, "on")
    try:
        wait_for(started(out, "t"), "the task to start")
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, text
    assert "returned 1 True" in text
    assert read_lines(out)[-1].startswith("done t ")
    with TaskQueue(url, progress=False) as tq:
        counts = tq.counts()
        assert (counts.visible, counts.leased, counts.completed) == (4, 0, 1)


def test_handle_sigterm_false_leaves_sigterm_to_the_caller(tmp_path: Path) -> None:
    out, url = tmp_path / "out.txt", f"sqlite://{tmp_path}/q.db"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerSleepTask(str(out), "t", 3.0)])
    proc = _poll_process(url, "off")
    try:
        wait_for(started(out, "t"), "the task to start")
        proc.send_signal(signal.SIGTERM)  # meets the script's own no-op handler: poll goes on
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # SIGINT still stops poll after the task
        text, _ = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert "returned 1 True" in text, text
