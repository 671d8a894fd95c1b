"""The upload engine: packing, per-entry retries, whole-batch retries, clear failures."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from tests.fakes import FlakyBackend, retryable
from tq_orchestrate import PayloadTooLargeError, UploadError
from tq_orchestrate._upload import RetryPolicy, Uploader, split_ranges
from tq_orchestrate.backends.memory import MemoryBackend
from tq_orchestrate.errors import BackendError

FAST = RetryPolicy(attempts=5, initial_seconds=0.001, max_seconds=0.01)


def encode(i: int) -> str:
    return json.dumps({"n": i})


def numbers(backend: FlakyBackend) -> Counter[int]:
    return Counter(json.loads(b)["n"] for b in backend.stored)


def run(backend: FlakyBackend, n: int, **options: object) -> int:
    return Uploader(backend, encode, retry=FAST, **options).run(i for i in range(n))  # type: ignore[arg-type]


def test_every_task_arrives_once_in_batches_within_limits() -> None:
    backend = FlakyBackend()
    assert run(backend, 1234) == 1234
    assert numbers(backend) == Counter(range(1234))
    assert max(backend.batch_sizes) == 10


def test_batches_are_cut_by_bytes() -> None:
    backend = FlakyBackend()
    big = "x" * 400
    Uploader(backend, lambda i: json.dumps({"n": i, "pad": big}), retry=FAST).run(range(20))
    # two 415-byte bodies fit in 1000 bytes, three do not
    assert max(backend.batch_sizes) == 2
    assert numbers(backend) == Counter(range(20))


def test_refused_entries_are_resent_until_accepted() -> None:
    seen: Counter[str] = Counter()

    def fault(call: int, bodies: Sequence[str]) -> list[int]:
        refused = []
        for i, body in enumerate(bodies):
            seen[body] += 1
            if json.loads(body)["n"] % 3 == 0 and seen[body] < 3:
                refused.append(i)
        return refused

    backend = FlakyBackend(fault)
    assert run(backend, 500) == 500
    assert numbers(backend) == Counter(range(500))
    assert seen[encode(3)] == 3


def test_whole_batch_retryable_errors_are_retried() -> None:
    tries: Counter[str] = Counter()

    def fault(call: int, bodies: Sequence[str]) -> None:
        tries[bodies[0]] += 1
        if tries[bodies[0]] <= 2:  # every batch fails twice, then goes through
            raise retryable()

    backend = FlakyBackend(fault)
    assert run(backend, 300) == 300
    assert numbers(backend) == Counter(range(300))


def test_entries_that_never_succeed_are_reported_by_index() -> None:
    def fault(call: int, bodies: Sequence[str]) -> list[int]:
        return [i for i, b in enumerate(bodies) if json.loads(b)["n"] in (7, 42)]

    backend = FlakyBackend(fault)
    with pytest.raises(UploadError) as info:
        run(backend, 100)
    assert info.value.inserted == 98
    assert [i for i, _ in info.value.failed] == [7, 42]
    assert "#7" in str(info.value) and "98 tasks inserted" in str(info.value)
    assert numbers(backend) == Counter(set(range(100)) - {7, 42})


def test_non_retryable_error_stops_reading_and_says_where() -> None:
    def fault(call: int, bodies: Sequence[str]) -> None:
        if call == 3:
            raise BackendError("AccessDenied", retryable=False)

    backend = FlakyBackend(fault)
    with pytest.raises(UploadError) as info:
        Uploader(backend, encode, retry=FAST, concurrency=1).run(range(1000))
    error = info.value
    assert error.inserted == len(backend.stored)
    assert error.inserted + len(error.failed) < 1000
    assert "not read" in str(error)
    assert {i for i, _ in error.failed}.isdisjoint(numbers(backend))


def test_oversized_task_names_task_and_size_and_keeps_earlier_ones() -> None:
    backend = FlakyBackend()

    def encode_big(i: int) -> str:
        return json.dumps({"n": i, "pad": "y" * (700 if i == 55 else 0)})

    with pytest.raises(PayloadTooLargeError) as info:
        Uploader(backend, encode_big, retry=FAST).run(range(100))
    assert info.value.limit == 600 and info.value.size > 600
    assert "#55" in str(info.value)
    assert any("tasks were inserted" in note for note in info.value.__notes__)
    assert numbers(backend) == Counter(range(50))  # whole batches before it


def test_generator_errors_propagate_after_in_flight_batches_finish() -> None:
    backend = FlakyBackend()

    def tasks() -> object:
        yield from range(25)
        raise RuntimeError("producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        Uploader(backend, encode, retry=FAST).run(tasks())  # type: ignore[arg-type]
    assert numbers(backend) == Counter(range(20))


def test_ctrl_c_stops_without_resending_and_says_what_went_in() -> None:
    backend = FlakyBackend(lambda call, bodies: [3] if call == 1 else None)
    slow = RetryPolicy(attempts=5, initial_seconds=3600, max_seconds=3600)  # a resend would hang the test

    def tasks() -> object:
        yield from range(25)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        Uploader(backend, encode, retry=slow, concurrency=1).run(tasks())  # type: ignore[arg-type]
    assert backend.calls == 2  # tasks 0-9 (3 refused) and 10-19; 20-24 never sent, 3 not resent
    assert numbers(backend) == Counter(i for i in range(20) if i != 3)
    assert info.value.__notes__ == [
        "19 tasks were inserted before the upload was interrupted; refused and not resent: 1"
    ]


def test_progress_counts_inserted_tasks() -> None:
    backend = FlakyBackend()
    ticks: list[int] = []
    Uploader(backend, encode, retry=FAST, progress=ticks.append).run(range(95))
    assert sum(ticks) == 95


@pytest.mark.parametrize(("total", "parts"), [(0, 3), (1, 4), (10, 3), (200, 2), (7, 7)])
def test_split_ranges_cover_everything_once(total: int, parts: int) -> None:
    ranges = split_ranges(total, parts)
    covered = [i for start, stop in ranges for i in range(start, stop)]
    assert covered == list(range(total))
    assert len(ranges) <= max(1, parts)


def test_retry_policy_waits_grow_and_stay_capped() -> None:
    """Waits are random up to initial * multiplier**(attempt-1), and that ceiling stops at the cap."""
    random.seed(7)
    policy = RetryPolicy(initial_seconds=1, max_seconds=8)
    ceilings = [min(8.0, 2.0 ** (attempt - 1)) for attempt in range(1, 9)]  # 1, 2, 4, 8, 8, ...
    means = []
    for attempt, ceiling in enumerate(ceilings, start=1):
        waits = [policy.wait_seconds(attempt) for _ in range(2000)]
        assert all(0 <= w <= ceiling for w in waits), f"attempt {attempt}: a wait above {ceiling}"
        assert max(waits) > 0.9 * ceiling, f"attempt {attempt}: waits never come near {ceiling}"
        means.append(sum(waits) / len(waits))
    assert means[0] < means[1] < means[2] < means[3], f"the waits do not grow: {means[:4]}"
    assert max(means[3:]) < 1.2 * min(means[3:]), f"the waits keep growing past the cap: {means[3:]}"


class _NoAddNote(Exception):
    """An exception as on Python 3.10: it has no ``add_note`` method."""

    def __getattribute__(self, name: str) -> object:
        if name == "add_note":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_add_note_works_without_exception_add_note() -> None:
    from tq_orchestrate._upload import add_note

    error = _NoAddNote("the real error")
    assert not hasattr(error, "add_note")
    add_note(error, "first")
    add_note(error, "second")
    assert error.__notes__ == ["first", "second"] and str(error) == "the real error"


def test_add_note_uses_add_note_where_python_has_it() -> None:
    from tq_orchestrate._upload import add_note

    error = ValueError("x")
    add_note(error, "note")
    assert error.__notes__ == ["note"]


def test_a_failed_upload_on_python_3_10_raises_the_real_error() -> None:
    from tq_orchestrate import _upload

    def fail(task: object) -> str:
        raise _NoAddNote("broken encoder")

    backend = MemoryBackend.from_url("mem://no-add-note")
    with pytest.raises(_NoAddNote, match="broken encoder") as info:
        _upload.upload(backend, ["a"], fail)
    assert info.value.__notes__ == ["0 tasks were inserted before this error"]
