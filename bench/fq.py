"""fq:// benchmark: tq_orchestrate's file queue vs python-task-queue's, same directory format.

Run: ``python bench/fq.py [--rounds 5] [--n 2000]``. Each round makes fresh
directories under the system temp dir (local disk) and runs both packages back to
back (the order alternates); the table shows medians and the ratio of medians.

* insert, fresh directory: ``TaskQueue("fq://DIR").insert(tasks)`` of ``n`` trivial tasks.
* insert after a drain: the same, ``--pause`` seconds (default 2) after the one-worker
  drain emptied the directory, as a block pipeline inserts block N+1 once block N
  is drained (ours then rewrites the files its workers left in ``tqo/spare``,
  which it takes only a second after the delete).
* drain, one worker: lease 10, execute, delete each, until empty (both packages'
  ``lease(num_tasks=10)``; upstream's own ``poll`` leases one at a time, slower still).
* drain, two workers: two processes doing the same on one directory; timed from a
  start signal to the last one finding the queue empty (interpreter start excluded).

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _tasks  # noqa: E402

BATCH = 10


IMPLS = ("upstream", "ours", "ours-lazy")
"""ours-lazy: ``movement_files=lazy`` (movement files written by the first lease)."""


def _queue(impl: str, directory: str) -> object:
    if impl.startswith("ours"):
        import tq_orchestrate

        query = "?movement_files=lazy" if impl == "ours-lazy" else ""
        return tq_orchestrate.TaskQueue(f"fq://{directory}{query}", progress=False)
    import taskqueue

    return taskqueue.TaskQueue(f"fq://{directory}", progress=False)


def insert(impl: str, directory: str, n: int) -> float:
    """Seconds to insert ``n`` tasks."""
    tq: object = _queue(impl, directory)
    tasks = list(_tasks.ours(n) if impl.startswith("ours") else _tasks.theirs(n))
    start = time.perf_counter()
    tq.insert(tasks)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def insert_later(impl: str, directory: str, n: int, pause_seconds: float) -> float:
    """Seconds to insert ``n`` tasks, ``pause_seconds`` from now (not timed)."""
    time.sleep(pause_seconds)
    return insert(impl, directory, n)


def drain(impl: str, directory: str) -> int:
    """Lease, execute and delete until the queue is empty; return how many."""
    import taskqueue

    import tq_orchestrate

    tq: object = _queue(impl, directory)
    done = 0
    while True:
        try:
            tasks = tq.lease(seconds=600, num_tasks=BATCH)  # type: ignore[attr-defined]
        except (taskqueue.QueueEmptyError, tq_orchestrate.QueueEmptyError):
            return done
        for task in tasks:
            task.execute()
        if impl.startswith("ours"):
            done += tq.delete(tasks)  # type: ignore[attr-defined]
            continue
        for task in tasks:  # upstream's delete takes one task at a time
            tq.delete(task)  # type: ignore[attr-defined]
            done += 1


def drain_one(impl: str, directory: str) -> float:
    start = time.perf_counter()
    drain(impl, directory)
    return time.perf_counter() - start


def drain_two(impl: str, directory: str) -> float:
    """Two worker processes; seconds from the start signal to the last one done."""
    cmd = [sys.executable, __file__, "--worker", impl, directory]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.time()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    ends = [float(p.communicate()[0].split()[0]) for p in procs]
    return max(ends) - start


def _worker(impl: str, directory: str) -> None:
    _queue(impl, directory)  # imports done before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    drain(impl, directory)
    print(time.time(), flush=True)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000, help="tasks per measurement (both packages)")
    parser.add_argument("--pause", type=float, default=2.0, help="drain to next insert, seconds")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    seconds: dict[tuple[str, str], list[float]] = {}
    measures: list[tuple[str, Callable[[str, str], float]]] = [
        ("insert", lambda impl, d: insert(impl, d, args.n)),
        ("drain, one worker", drain_one),
        ("insert after a drain", lambda impl, d: insert_later(impl, d, args.n, args.pause)),
        ("drain, two workers", drain_two),
    ]
    for r in range(args.rounds):
        shift = r % len(IMPLS)
        for impl in IMPLS[shift:] + IMPLS[:shift]:
            with tempfile.TemporaryDirectory(prefix=f"bench-fq-{impl}-") as d:
                for name, fn in measures:
                    took = fn(impl, d)
                    seconds.setdefault((name.strip(), impl), []).append(took)
                    print(f"round {r + 1} {impl:8s} {name:20s} {args.n / took:>10,.0f} tasks/s", flush=True)
    print(f"\n| fq://, {args.n} tasks | python-task-queue | ours | ratio | ours, lazy movement | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("insert", "insert after a drain", "drain, one worker", "drain, two workers"):
        up, us, lazy = (statistics.median(seconds[(name, impl)]) for impl in IMPLS)
        print(
            f"| {name} | {args.n / up:,.0f}/s | {args.n / us:,.0f}/s | {up / us:.1f}x "
            f"| {args.n / lazy:,.0f}/s | {up / lazy:.1f}x |"
        )
    print(f"(medians of {args.rounds} interleaved rounds)")


if __name__ == "__main__":
    main()
