"""Throughput of the embedded SQLite queue: inserts/s via send_batch, receive+delete/s.

Usage: ``python bench/embedded.py [--messages N] [--batch B] [--rounds R] [--durability normal|full]``.
Prints the median of R rounds, each on a fresh database in a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tq_orchestrate.backends.sqlite import SQLiteBackend


def body(i: int) -> str:
    """A small task-like payload (about 80 bytes)."""
    return '{"class": "bench.PrintTask", "kwargs": {"i": ' + str(i) + ', "path": "gs://bucket/x"}}'


def insert_rate(backend: SQLiteBackend, n: int, batch: int) -> float:
    bodies = [body(i) for i in range(n)]
    start = time.perf_counter()
    for offset in range(0, n, batch):
        backend.send_batch(bodies[offset : offset + batch])
    return n / (time.perf_counter() - start)


def receive_delete_rate(backend: SQLiteBackend, n: int, per_receive: int) -> float:
    done = 0
    start = time.perf_counter()
    while done < n:
        messages = backend.receive(per_receive, 600)
        if not messages:
            break
        done += backend.delete([m.handle for m in messages])
    elapsed = time.perf_counter() - start
    assert done == n, f"only {done} of {n} messages received and deleted"
    return n / elapsed


def one_round(args: argparse.Namespace) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteBackend.from_url(f"sqlite://{Path(tmp)}/bench.db", durability=args.durability)
        inserted = insert_rate(backend, args.messages, args.batch)
        received = receive_delete_rate(backend, args.messages, args.receive)
        backend.close()
    return inserted, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=SQLiteBackend.capabilities.max_batch_count)
    parser.add_argument("--receive", type=int, default=10, help="messages per receive call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    args = parser.parse_args()
    rounds = [one_round(args) for _ in range(args.rounds)]
    insert = statistics.median(r[0] for r in rounds)
    receive = statistics.median(r[1] for r in rounds)
    print(
        f"sqlite ({args.durability}), {args.messages:,} messages, median of {args.rounds} rounds:\n"
        f"  insert (send_batch of {args.batch}):       {insert:>10,.0f} messages/s\n"
        f"  receive({args.receive}) + delete:              {receive:>10,.0f} messages/s"
    )


if __name__ == "__main__":
    main()
