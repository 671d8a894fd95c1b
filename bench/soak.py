"""Soak: the reliability scenarios at full size, with a table of figures.

The scenarios are the reliability suite's (``tests/reliability/_harness.py``),
run bigger: 10,000 tasks for the worker kill -9 tests (20 kills on the embedded
queue, 15 on the SQS stand-in), 100,000 tasks for two workers draining while a
producer inserts, 20,000 tasks per upload engine under injected faults, the
producer killed after 50 batches, a database filled up, an SQS outage of 3 s in
the middle of an upload of 100,000 tasks (each engine), and the hostile-input
table decoded and sent through a worker on both queues (5 rounds). ``--quick`` runs CI sizes.

Everything runs on this machine: the embedded queue in a temporary directory,
the SQS stand-in on 127.0.0.1. Exits 1 if any task was lost.

Run: ``python bench/soak.py [--quick] [--seed N]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reliability import _harness as h


@dataclass(frozen=True)
class Sizes:
    kill_embedded: int
    kills_embedded: int
    kill_sqs: int
    kills_sqs: int
    load: int
    upload: int
    producer_batches: int
    full_before: int
    hostile_rounds: int
    outage_upload: int


QUICK = Sizes(2500, 5, 2000, 4, 5000, 2000, 6, 3000, 1, 20_000)
FULL = Sizes(10_000, 20, 10_000, 15, 100_000, 20_000, 50, 30_000, 5, 100_000)


def isolate_environment(home: Path) -> None:
    """Dummy AWS credentials, no AWS configuration and no proxies (loopback only)."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del os.environ[key]
    home.mkdir()
    os.environ.update(
        HOME=str(home),
        AWS_ACCESS_KEY_ID="soak",
        AWS_SECRET_ACCESS_KEY="soak",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        NO_PROXY="127.0.0.1,localhost",
    )


@contextlib.contextmanager
def standin() -> Iterator[object]:
    from tq_orchestrate.testing import SqsStandIn

    with SqsStandIn() as server:
        yield server


def run(sizes: Sizes, seed: int, workdir: Path) -> list[h.Figures]:
    from tq_orchestrate.testing import Faults

    rows: list[h.Figures] = []

    def step(name: str, fn: Callable[[], h.Figures]) -> None:
        print(f"... {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        figures = fn()
        if not figures.seconds:
            figures.seconds = time.monotonic() - start
        rows.append(figures)
        print(f"    {figures}", file=sys.stderr, flush=True)

    def sub(name: str) -> Path:
        path = workdir / name
        path.mkdir()
        return path

    mixed = Faults(
        entry_failure_rate=0.1,
        throttle_rate=0.08,
        error_rate=0.08,
        drop_before_rate=0.08,
        slow_rate=0.05,
        slow_seconds=0.2,
        seed=seed,
    )
    lossy = Faults(
        entry_failure_rate=0.05,
        throttle_rate=0.05,
        error_rate=0.05,
        drop_before_rate=0.05,
        drop_after_rate=0.05,
        bad_md5_rate=0.01,
        seed=seed + 1,
    )
    with standin() as server:
        step(
            "upload, mixed faults",
            lambda: h.upload_faults_scenario(
                server, sizes.upload, mixed, label="upload: mixed faults, 2 engines"
            )[0],
        )
        step(
            "upload, lost replies",
            lambda: h.upload_faults_scenario(
                server, sizes.upload, lossy, label="upload: lost replies, 2 engines"
            )[0],
        )
        hostile_sqs = sub("hostile-sqs")

        def hostile_on_sqs() -> h.Figures:
            from tq_orchestrate.backends.sqs import ensure_queue_pair

            endpoint = server.endpoint_url  # type: ignore[attr-defined]
            url, _ = ensure_queue_pair("soak-hostile", 2, endpoint_url=endpoint)
            return h.hostile_worker_scenario(
                hostile_sqs, workdir / "canary-sqs", sizes.hostile_rounds, url=url
            )[0]

        step("hostile, worker (SQS)", hostile_on_sqs)
        sqs_dir = sub("sqs-kill")
        url = server.create_queue("soak-kill")  # type: ignore[attr-defined]
        step(
            "SQS kill -9",
            lambda: h.kill_workers_scenario(
                url,
                sqs_dir,
                sizes.kill_sqs,
                label="workers kill -9 (SQS stand-in)",
                kills=sizes.kills_sqs,
                seed=seed,
                timeout=600,
            ),
        )
    for engine in ("boto3", "fast"):
        step(f"upload outage, {engine}", lambda e=engine: h.upload_outage_scenario(sizes.outage_upload, e))  # type: ignore[misc]
    embedded_dir = sub("embedded-kill")
    step(
        "embedded kill -9",
        lambda: h.kill_workers_scenario(
            f"sqlite://{embedded_dir}/q.db",
            embedded_dir,
            sizes.kill_embedded,
            label="workers kill -9 (embedded)",
            kills=sizes.kills_embedded,
            seed=seed,
            timeout=600,
        ),
    )
    for parallel in (1, 2):
        path = sub(f"producer{parallel}") / "q.db"
        step(
            f"producer kill -9, parallel={parallel}",
            lambda path=path, parallel=parallel: h.producer_crash_scenario(  # type: ignore[misc]
                path, parallel=parallel, batches=sizes.producer_batches
            ),
        )
    orphan_path = sub("producer-parent") / "q.db"
    step(
        "producer kill -9, parent only",
        lambda: h.producer_crash_scenario(
            orphan_path, parallel=2, batches=sizes.producer_batches, group=False
        ),
    )
    step("database full", lambda: h.full_database_scenario(sub("full") / "q.db", sizes.full_before))
    load_dir = sub("load")
    step(
        "load",
        lambda: h.load_scenario(
            f"sqlite://{load_dir}/q.db", load_dir, sizes.load, label="load: 2 workers + producer (embedded)"
        ),
    )
    step("hostile, decoded", lambda: h.hostile_direct(workdir / "canary-direct"))
    hostile_dir = sub("hostile")
    step(
        "hostile, worker",
        lambda: h.hostile_worker_scenario(hostile_dir, workdir / "canary-worker", sizes.hostile_rounds)[0],
    )
    return rows


HEADER = (
    "scenario",
    "faults injected",
    "tasks inserted",
    "tasks completed",
    "lost",
    "repeats",
    "leased twice",
    "hostile tried/refused",
    "tasks/s",
    "seconds",
)


def _measured(value: int | None) -> str:
    """A figure, or "-" where the scenario did not measure it."""
    return "-" if value is None else f"{value:,}"


def _sum_measured(values: Iterable[int | None]) -> int | None:
    """The sum of the measured figures; None if none was measured."""
    measured = [v for v in values if v is not None]
    return sum(measured) if measured else None


def table(rows: list[h.Figures]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in rows:
        hostile = f"{r.hostile_tried}/{r.hostile_refused}" if r.hostile_tried else "-"
        timed = r.completed and r.seconds and r.faults != 1 and not r.hostile_tried  # throughput rows
        rate = f"{r.tasks_per_second:,.0f}" if timed else "-"
        cells = [
            r.scenario,
            f"{r.faults:,}",
            f"{r.inserted:,}",
            f"{r.completed:,}",
            f"{r.lost:,}",
            f"{r.repeats:,}",
            _measured(r.leased_twice),
            hostile,
            rate,
            f"{r.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    total = h.Figures("total")
    for r in rows:
        total.faults += r.faults
        total.inserted += r.inserted
        total.completed += r.completed
        total.lost += r.lost
        total.repeats += r.repeats
        total.hostile_tried += r.hostile_tried
        total.hostile_refused += r.hostile_refused
        total.seconds += r.seconds
    twice = _measured(_sum_measured(r.leased_twice for r in rows))
    lines.append(
        f"| **total** | {total.faults:,} | {total.inserted:,} | {total.completed:,} | **{total.lost:,}** | "
        f"{total.repeats:,} | {twice} | {total.hostile_tried}/{total.hostile_refused} | - | "
        f"{total.seconds:.1f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI sizes (about a minute)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="tqo-soak-") as tmp:
        workdir = Path(tmp)
        isolate_environment(workdir / "home")
        os.chdir(h.ROOT)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rows = run(sizes, args.seed, workdir)
    print(
        f"\nsoak {'--quick' if args.quick else '(full)'} seed={args.seed}, {started}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}\n"
    )
    print(table(rows))
    print(
        "\nfaults injected: worker or producer kill -9, refused batch entries, throttles, HTTP 500s, "
        "connections dropped before or after processing, wrong MD5s (slow responses not counted), "
        "SQS outages; repeats: extra executions (kill tests) or extra stored copies (uploads with "
        "lost replies or across an outage)."
    )
    lost = sum(r.lost for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
