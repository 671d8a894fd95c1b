"""Worker benchmark: tasks/s draining trivial tasks, ours beside python-task-queue's ``poll``.

For each queue kind (the embedded queue vs upstream's ``fq://``; the SQS stand-in
for both) and for one and two worker processes, a fresh queue gets N trivial
tasks (not timed), then the workers start together and the clock stops when the
N-th task has been executed and deleted. Both packages run their own ``poll``
with the same lease, ``stop_fn`` and ``after_fn`` counting completions in shared
memory. Ours runs twice: leasing 10 tasks per call (``--num-tasks 10``) and 1.

Rounds interleave the implementations; the table shows medians and ratios.

Run: ``python bench/worker.py [--n 20000] [--rounds 3] [--latency-ms 0] [--kinds embedded,sqs]``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _tasks

LEASE_SECONDS = 600
IMPLS = ("ours10", "ours1", "upstream")
LABELS = {"ours10": "ours (10/call)", "ours1": "ours (1/call)", "upstream": "python-task-queue"}


@dataclass(frozen=True)
class Target:
    """Where one run's workers poll: a URL plus constructor keywords."""

    impl: str
    url: str
    options: tuple[tuple[str, Any], ...] = ()


def _open(target: Target) -> Any:
    if target.impl == "upstream":
        import taskqueue

        return taskqueue.TaskQueue(target.url, progress=False, **dict(target.options))
    import tq_orchestrate

    return tq_orchestrate.TaskQueue(target.url, progress=False, **dict(target.options))


def _worker(
    target: Target, n: int, done: Synchronized[int], end: Synchronized[float], ready: Any, go: Any
) -> None:
    """One worker process: open the queue, wait for the start, poll until N are done."""
    import bench._tasks  # noqa: F401 - registers the task classes in this process

    tq = _open(target)

    def after(task: Any) -> None:
        with done.get_lock():
            done.value += 1
            if done.value == n:
                end.value = time.monotonic()

    def stop() -> bool:
        return bool(done.value >= n)

    ready.release()
    go.wait()
    if target.impl == "upstream":
        tq.poll(lease_seconds=LEASE_SECONDS, stop_fn=stop, after_fn=after)
    else:
        num_tasks = 10 if target.impl == "ours10" else 1
        tq.poll(lease_seconds=LEASE_SECONDS, num_tasks=num_tasks, stop_fn=stop, after_fn=after)


def drain(target: Target, n: int, workers: int) -> float:
    """Tasks/s of ``workers`` processes draining N tasks from ``target``."""
    ctx = mp.get_context("spawn")
    done = ctx.Value("q", 0)
    end = ctx.Value("d", 0.0)
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(target, n, done, end, ready, go)) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError(f"{target.impl} workers did not start")
        start = time.monotonic()
        go.set()
        while done.value < n:
            if not any(p.is_alive() for p in procs):
                raise RuntimeError(f"{target.impl} workers exited after {done.value} of {n} tasks")
            time.sleep(0.01)
        return n / (end.value - start)
    finally:
        for p in procs:  # stop_fn ends both packages' loops; a long poll may hold one up
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join()


# -- queues -------------------------------------------------------------------------


def fill(target: Target, n: int) -> None:
    tq = _open(target)
    if target.impl == "upstream":
        tq.insert(_tasks.theirs(n))
    else:
        tq.insert_all(_tasks.ours(n))
        tq.close()


class Queues:
    """Fresh, filled queues for each run."""

    def __init__(self, workdir: str, endpoint_url: str | None, standin: Any) -> None:
        self.workdir = workdir
        self.endpoint_url = endpoint_url
        self.standin = standin
        self.count = 0

    def make(self, kind: str, impl: str, n: int) -> Target:
        self.count += 1
        name = f"{impl}-{self.count}"
        if kind == "embedded":
            url = (
                f"fq://{self.workdir}/{name}" if impl == "upstream" else f"sqlite://{self.workdir}/{name}.db"
            )
            target = Target(impl, url)
        else:
            queue_url = self.standin.create_queue(name)
            if impl == "upstream":
                options = (("endpoint_url", self.endpoint_url), ("region_name", "us-east-1"))
                target = Target(impl, f"sqs://{name}", options)
            else:
                target = Target(impl, queue_url)
        fill(target, n)
        return target


@contextlib.contextmanager
def sqs_standin(latency_seconds: float) -> Iterator[Any]:
    from tq_orchestrate.testing.sqs_server import SqsStandIn

    with SqsStandIn(latency_seconds=latency_seconds) as server:
        yield server


def isolate_environment(home: str) -> None:
    """Dummy AWS settings and an empty HOME, so nothing reads the machine's configuration."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            del os.environ[key]
    os.environ.update(
        HOME=home,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )


# -- report -------------------------------------------------------------------------


def table(results: dict[tuple[str, int, str], list[float]], n: int) -> str:
    head = (
        f"| queue (N={n}) | workers | {LABELS['ours10']} | {LABELS['ours1']} | {LABELS['upstream']} "
        "| ratio 10/call | ratio 1/call | ours (10/call) per worker |"
    )
    rows = [head, "|" + "---|" * 8]
    cells = sorted({(k, w) for k, w, _ in results}, key=lambda c: (c[0] != "embedded", c[1]))
    for kind, workers in cells:
        med = {impl: statistics.median(results[(kind, workers, impl)]) for impl in IMPLS}
        rows.append(
            f"| {kind} | {workers} | {med['ours10']:,.0f} | {med['ours1']:,.0f} | {med['upstream']:,.0f} "
            f"| {med['ours10'] / med['upstream']:.1f}x | {med['ours1'] / med['upstream']:.1f}x "
            f"| {med['ours10'] / workers:,.0f} |"
        )
    return "\n".join(rows)


def run_round(
    r: int,
    queues: Queues,
    kinds: list[str],
    worker_counts: list[int],
    n: int,
    results: dict[tuple[str, int, str], list[float]],
) -> None:
    """One round: every cell, the implementations in alternating order."""
    for kind in kinds:
        for workers in worker_counts:
            for impl in IMPLS if r % 2 == 0 else tuple(reversed(IMPLS)):
                rate = drain(queues.make(kind, impl, n), n, workers)
                results.setdefault((kind, workers, impl), []).append(rate)
                print(f"round {r + 1} {kind:8} workers={workers} {LABELS[impl]:18} {rate:10,.0f} tasks/s")
                sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="SQS stand-in response delay")
    parser.add_argument("--kinds", default="embedded,sqs")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    worker_counts = [int(w) for w in args.workers.split(",")]
    results: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tqo-bench-") as workdir:
        isolate_environment(os.path.join(workdir, "home"))
        os.makedirs(os.environ["HOME"])
        with contextlib.ExitStack() as stack:
            standin = stack.enter_context(sqs_standin(args.latency_ms / 1000)) if "sqs" in kinds else None
            queues = Queues(workdir, standin.endpoint_url if standin else None, standin)
            for r in range(args.rounds):
                run_round(r, queues, kinds, worker_counts, args.n, results)
    print()
    print(f"SQS stand-in latency: {args.latency_ms:g} ms per response; medians of {args.rounds} rounds")
    print(table(results, args.n))


if __name__ == "__main__":
    main()
