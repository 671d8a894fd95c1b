"""TaskQueue front: the upstream README listings on the embedded queue, and the API."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sample_tasks as st
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tq_orchestrate import (
    ConfigurationError,
    QueueEmptyError,
    SerializationError,
    TaskQueue,
    UnknownSchemeError,
)


class RecordTaskIterator:
    """Listing 8's sliceable iterator."""

    def __init__(self, path: str, start: int, end: int) -> None:
        self.path, self.start, self.end = path, start, end

    def __getitem__(self, slc: slice) -> RecordTaskIterator:
        itr = copy.deepcopy(self)
        itr.start = self.start + slc.start
        itr.end = self.start + slc.stop
        return itr

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self) -> Iterator[st.RecordTask]:
        for i in range(self.start, self.end):
            yield st.RecordTask(self.path, i)


@pytest.fixture(params=["sqlite", "mem"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/q.db"
    return f"mem://{request.node.name}"


def drain(tq: TaskQueue) -> int:
    done = 0
    while True:
        try:
            tasks = tq.lease(seconds=60, num_tasks=10)
        except QueueEmptyError:
            return done
        for task in tasks:
            task.execute()
        done += tq.delete(tasks)


def test_bare_name_is_the_embedded_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tq = TaskQueue("sqs-queue-name", progress=False)
    tq.insert_all(st.PrintTask(i) for i in range(1000))
    assert type(tq.backend).__name__ == "SQLiteBackend"
    assert tq.enqueued == 1000 and tq.inserted == 1000


def test_listings_2_to_4_with_and_insert_all(url: str, tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    with TaskQueue(url, progress=False) as tq:
        for i in range(20):
            tq.insert(st.RecordTask(out, i))
    tq = TaskQueue(url, progress=False)
    tasks = [st.RecordTask(out, i) for i in range(20, 120)]
    assert tq.insert_all(tasks) == 100
    assert tq.insert_all((st.RecordTask(out, i) for i in range(120, 1000)), total=880) == 880
    assert tq.enqueued == 1000
    assert drain(tq) == 1000
    assert sorted(st.read_numbers(out)) == list(range(1000))
    assert tq.is_empty() and tq.completed == 1000


def test_listing_8_sliceable_iterator_across_processes(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    assert tq.insert_all(RecordTaskIterator(out, 0, 2000), parallel=2) == 2000
    assert tq.inserted == 2000
    assert drain(tq) == 2000
    assert sorted(st.read_numbers(out)) == list(range(2000))


def test_parallel_with_a_generator_falls_back_to_one_process(tmp_path: Path) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    assert tq.insert_all((st.PrintTask(i) for i in range(30)), parallel=2) == 30


def test_queue_survives_pickling_with_its_options(tmp_path: Path) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False, array_format="typed", max_receives=3)
    clone = pickle.loads(pickle.dumps(tq))
    assert clone.url == tq.url and clone.array_format == "typed"
    assert clone.backend_options == {"max_receives": 3}


def test_lease_renew_release_delete(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert([st.PrintTask("a"), st.PrintTask("b")])
    first = tq.lease(seconds=30)
    assert isinstance(first, st.PrintTask) and isinstance(first.id, str)
    tq.renew(first, 60)
    assert tq.leased == 1
    tq.release(first)
    assert tq.leased == 0
    both = tq.lease(seconds=30, num_tasks=5)
    assert sorted(t.txt for t in both) == ["a", "b"]
    assert tq.delete(both) == 2
    with pytest.raises(QueueEmptyError):
        tq.lease(seconds=30)


def test_delay_seconds_hides_tasks(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert(st.PrintTask("later"), delay_seconds=60)
    counts = tq.counts()
    assert counts.delayed == 1 and counts.visible == 0
    with pytest.raises(ConfigurationError, match="delay_seconds"):
        tq.insert(st.PrintTask("x"), delay_seconds=-1)


def test_corrupt_message_is_dead_lettered_not_handed_out(tmp_path: Path) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    tq.backend.send_batch(["{broken", tq.encode(st.PrintTask("ok"))])
    task = tq.lease(seconds=30, num_tasks=10)
    assert [t.txt for t in task] == ["ok"]
    dead = tq.dead_letters()
    assert [d.body for d in dead] == ["{broken"] and "not valid JSON" in (dead[0].error or "")


def test_bad_task_is_refused_before_anything_is_inserted(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    with pytest.raises(SerializationError, match=r"RecordTask\.path"):
        tq.insert([st.RecordTask({1}, 1)])  # type: ignore[arg-type]
    assert tq.enqueued == 0


def test_bad_task_error_says_which_task_of_the_iterable(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    with pytest.raises(SerializationError, match="lone surrogate") as info:
        tq.insert([st.PrintTask("fine"), st.PrintTask("bad \ud800 text")])
    assert any(note.startswith("in task #1: PrintTask(") for note in info.value.__notes__)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        _ = TaskQueue("redis://x").backend
    assert "sqlite" in str(info.value) and "sqs" in str(info.value)


def test_purge(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert_all(st.PrintTask(i) for i in range(25))
    tq.purge()
    assert tq.is_empty()


def test_corrupt_message_without_dead_letter_queue_is_left_leased(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    tq.backend.send_batch(["{broken"])

    def unsupported(handle: str, error: str) -> None:
        raise ConfigurationError("no dead-letter queue")

    monkeypatch.setattr(tq.backend, "dead_letter", unsupported)
    with pytest.raises(QueueEmptyError):
        tq.lease(seconds=30)
    assert tq.counts().leased == 1  # not lost: it comes back when the lease ends


def test_a_constructor_that_raises_hands_the_whole_receive_back(tmp_path: Path) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    tq.backend.send_batch([tq.encode(st.PrintTask("ok")), '{"payload": {"class": "BadInit"}}'])
    with pytest.raises(ValueError, match="cannot start"):
        tq.lease(seconds=600, num_tasks=10)
    assert tq.counts().visible == 2 and tq.counts().leased == 0


class EndlessPrintTasks:
    """A sliceable source so large that no shard finishes during a test."""

    def __init__(self, start: int = 0, stop: int = 10**9) -> None:
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, slc: slice) -> EndlessPrintTasks:
        return EndlessPrintTasks(self.start + slc.start, self.start + slc.stop)

    def __iter__(self) -> Iterator[st.PrintTask]:
        return (st.PrintTask(i) for i in range(self.start, self.stop))


def test_a_killed_upload_process_ends_the_upload_even_if_sigterm_is_handled(tmp_path: Path) -> None:
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from tq_orchestrate import UploadError

    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)

    def kill_one_child() -> None:
        deadline = time.monotonic() + 60
        while (tq.counts().inserted or 0) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(multiprocessing.active_children()[0].pid or 0, signal.SIGKILL)

    # a graceful-stop handler in the parent (as a worker installs) is inherited by forked children
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        threading.Thread(target=kill_one_child, daemon=True).start()
        with pytest.raises(UploadError, match="upload processes"):
            tq.insert_all(EndlessPrintTasks(), parallel=2)
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- python-task-queue's constructor and methods (issue 10) ----------------------


class IgnoresSlices(RecordTaskIterator):
    """A broken ``__getitem__``: every slice is the whole listing."""

    def __getitem__(self, slc: slice) -> RecordTaskIterator:
        return copy.deepcopy(self)


def test_upstream_constructor_arguments(tmp_path: Path) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", 7, True, False)
    assert (tq.concurrency, tq.green, tq.progress) == (7, True, False)
    sqs = TaskQueue("sqs://some-queue", n_threads=3, green=True, progress=False, region_name="eu-west-1")
    assert sqs.backend_options == {"region": "eu-west-1"} and sqs.concurrency == 3
    clone = pickle.loads(pickle.dumps(sqs))
    assert (clone.green, clone.concurrency, clone.backend_options) == (True, 3, {"region": "eu-west-1"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_threads": 0},
        {"n_threads": True},
        {"n_threads": 4, "concurrency": 8},
        {"region_name": "us-east-1", "region": "eu-west-1"},
    ],
)
def test_contradictory_or_bad_constructor_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        TaskQueue("sqs://q", **kwargs)  # type: ignore[arg-type]


def test_unknown_scheme_fails_at_construction() -> None:
    with pytest.raises(UnknownSchemeError, match="nosuch"):
        TaskQueue("nosuch://x")


def test_insert_another_queue_copies_without_leasing(url: str, tmp_path: Path) -> None:
    src = TaskQueue(f"sqlite://{tmp_path}/src.db", progress=False)
    src.insert([st.PrintTask(i) for i in range(25)])
    held = src.lease(seconds=60)
    dst = TaskQueue(url, progress=False)
    assert dst.insert(src) == 25
    assert sorted(t.txt for t in dst.tasks()) == sorted(str(i) for i in range(25))
    assert src.enqueued == 25 and src.leased == 1
    src.delete(held)


def test_insert_a_queue_into_itself_is_refused(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert(st.PrintTask(1))
    with pytest.raises(ConfigurationError, match="itself"):
        tq.insert(TaskQueue(url, progress=False))
    assert tq.enqueued == 1


def test_tasks_and_list_include_leased_and_do_not_lease(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert([st.PrintTask("a"), st.PrintTask("b")])
    tq.lease(seconds=60)
    assert sorted(t.txt for t in tq.list()) == ["a", "b"]
    assert (tq.leased, tq.enqueued) == (1, 2)


def test_tasks_on_sqs_is_a_clear_error_before_any_call(aws_env: Path, tmp_path: Path) -> None:
    tq = TaskQueue("sqs://never-contacted", progress=False, region="us-east-1")
    with pytest.raises(ConfigurationError, match=r"listing its messages.*tqo copy"):
        tq.tasks()
    with pytest.raises(ConfigurationError, match="listing its messages"):
        TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False).insert(tq)


def test_rezero_keeps_tasks(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    tq.insert([st.PrintTask(i) for i in range(3)])
    tq.delete(tq.lease(seconds=60))
    tq.rezero()
    assert (tq.inserted, tq.completed, tq.enqueued) == (0, 0, 2)


def test_upstream_method_names(url: str) -> None:
    tq = TaskQueue(url, progress=False)
    assert tq.insert([st.PrintTask(1), st.PrintTask(2)], 0, None, 1, True) == 2
    task = tq.lease(30, 1, None)
    tq.renew_lease(task, 60)
    assert tq.release_all() == 1
    tq.purge(native=True)
    assert tq.is_empty() and tq.enqueued == 0


def test_parallel_upload_of_a_listing_that_does_not_slice_inserts_each_task_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tq = TaskQueue(f"sqlite://{tmp_path}/q.db", progress=False)
    assert tq.insert_all(IgnoresSlices(str(tmp_path / "out"), 0, 300), parallel=3) == 300
    assert tq.enqueued == 300
    assert "does not slice" in caplog.text and "IgnoresSlices[0:100] has 300 items" in caplog.text


def test_python_task_queue_keyword_qurl_names_the_queue() -> None:
    with TaskQueue(qurl="mem://by-qurl", progress=False) as tq:
        assert tq.url == "mem://by-qurl"
        tq.insert([st.PrintTask("q")])
        assert tq.counts().visible == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("mem://a",), {"qurl": "mem://b"}, "give the queue URL once"),
        ((), {}, "queue URL must be a non-empty string, got None"),
        ((), {"qurl": ""}, "queue URL must be a non-empty string"),
    ],
)
def test_queue_url_given_twice_or_not_at_all_is_a_clear_error(
    args: tuple[str, ...], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TaskQueue(*args, **kwargs)
