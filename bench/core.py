"""Core benchmarks: embedded queue vs python-task-queue's fq://, LocalTaskQueue, memory.

Run: ``python bench/core.py [--rounds 3] [--n 20000]``. Rounds interleave the two
packages on the same machine state; the table shows medians and the ratio of
medians. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import taskqueue

import tq_orchestrate
from bench import _tasks


def rate(n: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def ours_insert(n: int, d: str) -> float:
    tq = tq_orchestrate.TaskQueue(f"sqlite://{d}/q.db", progress=False)
    return rate(n, lambda: tq.insert_all(_tasks.ours(n)))


def theirs_insert(n: int, d: str) -> float:
    tq = taskqueue.TaskQueue(f"fq://{d}/fq", progress=False)
    return rate(n, lambda: tq.insert(_tasks.theirs(n)))


def ours_drain(n: int, d: str) -> float:
    tq = tq_orchestrate.TaskQueue(f"sqlite://{d}/q.db", progress=False)

    def loop() -> None:
        done = 0
        while done < n:
            tasks = tq.lease(seconds=600, num_tasks=10)
            for t in tasks:
                t.execute()
            done += tq.delete(tasks)

    return rate(n, loop)


def theirs_drain(n: int, d: str) -> float:
    tq = taskqueue.TaskQueue(f"fq://{d}/fq", progress=False)

    def loop() -> None:
        for _ in range(n):
            t = tq.lease(seconds=600)
            t.execute()
            tq.delete(t)

    return rate(n, loop)


def ours_local(n: int) -> float:
    return rate(
        n, lambda: tq_orchestrate.LocalTaskQueue(parallel=2, progress=False).insert_all(_tasks.ours(n))
    )


def theirs_local(n: int) -> float:
    def run() -> None:
        with taskqueue.LocalTaskQueue(parallel=2, progress=False) as tq:
            tq.insert(_tasks.theirs(n))

    return rate(n, run)


RSS_SCRIPT = """
import resource, sys
sys.path.insert(0, {root!r})
from bench import _tasks
import tq_orchestrate
tq = tq_orchestrate.TaskQueue({url!r}, progress=False)
tq.insert_all(_tasks.ours({n}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def peak_rss_mb(n: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        code = RSS_SCRIPT.format(
            root=str(Path(__file__).resolve().parent.parent), url=f"sqlite://{d}/q.db", n=n
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=20_000, help="tasks per measurement (ours)")
    parser.add_argument("--upstream-n", type=int, default=3_000, help="tasks per upstream measurement")
    parser.add_argument("--rss-n", type=int, default=1_000_000)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)
        print(f"  {name:32s} {value:>10,.0f} tasks/s", flush=True)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}")
        with tempfile.TemporaryDirectory() as d:
            record("upstream fq insert", theirs_insert(args.upstream_n, d))
            record("ours embedded insert", ours_insert(args.n, d))
            record("upstream fq lease+exec+delete", theirs_drain(args.upstream_n, d))
            record("ours lease+exec+delete", ours_drain(args.n, d))
        record("upstream LocalTaskQueue(2)", theirs_local(args.upstream_n))
        record("ours LocalTaskQueue(2)", ours_local(args.n))

    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n| measurement | python-task-queue | tq_orchestrate | ratio |")
    print("|---|---:|---:|---:|")
    for label, up, us in [
        ("embedded insert (fq:// upstream)", "upstream fq insert", "ours embedded insert"),
        ("lease+execute+delete, one worker", "upstream fq lease+exec+delete", "ours lease+exec+delete"),
        ("LocalTaskQueue(parallel=2)", "upstream LocalTaskQueue(2)", "ours LocalTaskQueue(2)"),
    ]:
        print(f"| {label} | {med[up]:,.0f}/s | {med[us]:,.0f}/s | {med[us] / med[up]:.1f}x |")
    if args.rss_n:
        print(f"\npeak RSS, insert_all of a {args.rss_n:,}-task generator: {peak_rss_mb(args.rss_n)} MB")
    print(f"(medians of {args.rounds} interleaved rounds; cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
