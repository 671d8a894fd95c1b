"""What Dagster costs the block pipeline: chaining delay and upload overhead.

1. **Chain delay**: the time from the moment a block's last task finished (the
   newest output tile's mtime) to the creation of the next block's run, with
   real worker processes and the block-chain sensor evaluated back to back (as
   ``tqo demo`` drives it). Measured on the embedded queue and on an SQS
   stand-in (``tq_orchestrate.testing.sqs_server``, 20 ms per response) whose
   counts the drain check treats as approximate, with a shortened lag.
1b. **Chain delay under ``dagster dev``**: the example in a real ``dagster dev``
   (webserver, daemon, run processes) with two workers: last task of block k
   -> block k's drained materialization, -> block k+1's upload run created,
   -> block k+1's upload materialized; and the last block -> ``verified``.
2. **Upload overhead**: the block upload asset's job (``execute_in_process`` of
   one partition: count, shards uploaded one after another inside the asset) against a plain
   ``TaskQueue.insert_all`` of the same tasks from the same factory, in the same
   process, interleaved rounds, medians. Target: at most 10 % slower.

Run: ``python bench/dagster_overhead.py [--quick] [--rounds 3] [--tasks 200000]``. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from tq_orchestrate import RegisteredTask, TaskQueue  # noqa: E402

FACTORY = "bench.dagster_overhead:overhead_tasks"
COUNT = "bench.dagster_overhead:overhead_count"


class OverheadTask(RegisteredTask):
    """A small task shaped like a real one (a few ints and a path)."""

    def __init__(self, block: str, index: int, path: str) -> None:
        super().__init__(block, index, path)

    def execute(self) -> None:
        pass


def overhead_tasks(block: str, start: int, stop: int, n: str) -> Iterator[OverheadTask]:
    """Tasks ``start..stop-1`` of ``block``."""
    del n
    for i in range(start, stop):
        yield OverheadTask(block, i, f"volume/block_{block}/tile_{i:07d}.npy")


def overhead_count(block: str, n: str) -> int:
    """Every block has ``n`` tasks."""
    del block
    return int(n)


# -- environment ----------------------------------------------------------------------------------


def isolate_aws(home: str) -> None:
    """Dummy AWS settings so nothing reads the machine's configuration (children inherit them)."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[key]
    os.environ.update(
        HOME=home,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )


@contextlib.contextmanager
def stand_in(latency_ms: float, queues: list[str], store: bool = True) -> Iterator[str]:
    """An SQS stand-in process; yields its endpoint URL."""
    command = [sys.executable, "-m", "tq_orchestrate.testing.sqs_server", "--latency-ms", str(latency_ms)]
    for name in queues:
        command += ["--queue", name]
    if not store:
        command.append("--no-store")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    try:
        if not endpoint.startswith("http://127.0.0.1:"):
            raise SystemExit(f"stand-in did not start (got {endpoint!r})")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def queue_url(endpoint: str, name: str) -> str:
    return f"{endpoint}/000000000000/{name}"


# -- 1. chain delay -------------------------------------------------------------------------------


def chain_delays(
    work: Path,
    url: str,
    *,
    blocks: int,
    drain: dict[str, Any],
    poll_seconds: float,
    workers: int,
    ledger_url: str | None = None,
) -> list[float]:
    """Seconds from block k's last task to block k+1's run, for k = 0..blocks-2."""
    import dagster as dg

    from tq_orchestrate.orchestration.demo import drive_chain, worker_processes
    from tq_orchestrate.orchestration.example import pipeline, volume
    from tq_orchestrate.orchestration.resources import TaskQueueResource

    root = work / "data"
    layout = volume.Layout(blocks=blocks, block_depth=4, height=128, width=128, tile=32)
    volume.make_volume(root, layout)
    resource = TaskQueueResource(queue_url=url, ledger_url=ledger_url, **drain)
    defs = pipeline.build_definitions(
        root=str(root), blocks=blocks, queue=resource, tick_budget_seconds=5.0, poll_seconds=poll_seconds
    )
    job_name = f"{pipeline.NAME}_upload_job"
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(pipeline.VOLUME))
        extra = ("--ledger-url", ledger_url) if ledger_url else ()
        with worker_processes(workers, url, pipeline.TASKS_MODULE, log_dir=work, extra_args=extra):
            outcome = drive_chain(
                defs, instance, job_name=job_name, sensor_name=f"{pipeline.NAME}_chain", timeout_seconds=600
            )
        runs = instance.get_run_records(dg.RunsFilter(job_name=job_name))
    if not outcome.complete:
        raise SystemExit(f"chain did not complete: {outcome.reason}")
    ok, message = volume.verify(root)
    if not ok:
        raise SystemExit(message)
    records = sorted(runs, key=lambda r: r.create_timestamp)
    delays = []
    for k, record in enumerate(records[1:]):
        last = max(volume.tile_path(root, k, y0, x0).stat().st_mtime for y0, _, x0, _ in layout.tiles())
        delays.append(record.create_timestamp.timestamp() - last)
    return delays


def daemon_delays(work: Path, blocks: int) -> dict[str, list[float]]:
    """Delays of one series of the example under `dagster dev` (see 1b)."""
    import dagster as dg

    from tests.orchestration.dagster_dev import (
        dagster_dev,
        materializations,
        materialize_volume,
        start_sensor,
    )
    from tq_orchestrate.orchestration.demo import worker_processes
    from tq_orchestrate.orchestration.example import pipeline, volume

    with dagster_dev(work, blocks=blocks) as dev:
        materialize_volume(dev, {"block_depth": 4, "height": 128, "width": 128, "tile": 32})
        start_sensor(dev, f"{pipeline.NAME}_chain")
        url = f"sqlite://{dev.example / 'queue.db'}"
        with worker_processes(2, url, pipeline.TASKS_MODULE, log_dir=work):
            deadline = time.monotonic() + 300
            while not materializations(dev, pipeline.VERIFIED):
                if time.monotonic() > deadline:
                    raise SystemExit(f"dagster dev: no verified after 300 s; see {dev.log}")
                time.sleep(0.5)
        drained = [float(m["timestamp"]) / 1000 for m in materializations(dev, f"{pipeline.NAME}_blocks")]
        uploaded = [float(m["timestamp"]) / 1000 for m in materializations(dev, f"{pipeline.NAME}_upload")]
        verified = float(materializations(dev, pipeline.VERIFIED)[0]["timestamp"]) / 1000
        with dg.DagsterInstance.from_config(str(dev.home)) as instance:
            runs = instance.get_run_records(dg.RunsFilter(job_name=f"{pipeline.NAME}_upload_job"))
            created = sorted(r.create_timestamp.timestamp() for r in runs)
    layout = volume.load_layout(dev.example)
    last = [
        max(volume.tile_path(dev.example, k, y0, x0).stat().st_mtime for y0, _, x0, _ in layout.tiles())
        for k in range(blocks)
    ]
    return {
        "last task -> block drained (materialization reported)": [
            d - t for d, t in zip(drained, last, strict=True)
        ],
        "last task -> next upload run created": [c - t for c, t in zip(created[1:], last, strict=False)],
        "next upload run created -> its upload materialized": [
            u - c for u, c in zip(uploaded[1:], created[1:], strict=True)
        ],
        "last block drained -> verified materialized": [verified - drained[-1]],
    }


def daemon_table(work: Path, blocks: int) -> None:
    rows = daemon_delays(work / "dagster-dev", blocks)
    print(f"\n## Chain delay under dagster dev ({blocks} blocks, 2 workers, sensor interval 1 s)\n")
    print("| step | median s | max s |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} |")


# -- 2. upload overhead ---------------------------------------------------------------------------


class Uploads:
    """Both ways of uploading one block's tasks to a queue of one kind (a fresh one each time)."""

    def __init__(self, make_url: Any, shard_size: int, engine: str | None = None) -> None:
        import dagster as dg

        self.dg = dg
        self.make_url, self.shard_size, self.engine = make_url, shard_size, engine
        self.instance = dg.DagsterInstance.ephemeral()

    def close(self) -> None:
        self.instance.dispose()

    def plain(self, n: int) -> float:
        options = {"engine": self.engine} if self.engine else {}
        with TaskQueue(self.make_url(), progress=False, **options) as queue:
            began = time.perf_counter()
            inserted = queue.insert_all(overhead_tasks("0", 0, n, str(n)), total=n)
            seconds = time.perf_counter() - began
        if inserted != n:
            raise SystemExit(f"plain upload inserted {inserted} of {n}")
        return seconds

    def dagster(self, n: int) -> float:
        from tq_orchestrate.orchestration.assets import BlockSpec, build_block_assets
        from tq_orchestrate.orchestration.demo import quiet_run_config
        from tq_orchestrate.orchestration.jobs import RESOURCE_KEY
        from tq_orchestrate.orchestration.resources import TaskQueueResource

        spec = BlockSpec("upload", ["0"], FACTORY, COUNT, {"n": str(n)}, shard_size=self.shard_size)
        blocks = build_block_assets(spec)
        resource = TaskQueueResource(queue_url=self.make_url(), upload_engine=self.engine)
        defs = self.dg.Definitions(
            assets=blocks.assets(), jobs=[blocks.job], resources={RESOURCE_KEY: resource}
        )
        resolved = defs.resolve_job_def(blocks.job.name)
        began = time.perf_counter()
        result = resolved.execute_in_process(
            partition_key="0", instance=self.instance, run_config=quiet_run_config(resolved, "0")
        )
        seconds = time.perf_counter() - began
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        if metadata["tasks"].value != n:
            raise SystemExit("the Dagster upload inserted the wrong number of tasks")
        return seconds


def upload_overhead(uploads: Uploads, n: int, rounds: int) -> dict[str, float]:
    """Median seconds of both ways over interleaved rounds, after a warm-up of each."""
    uploads.plain(1000)
    uploads.dagster(1000)
    times: dict[str, list[float]] = {"plain": [], "dagster": []}
    for r in range(rounds):
        order = ("plain", "dagster") if r % 2 == 0 else ("dagster", "plain")
        for way in order:
            times[way].append(getattr(uploads, way)(n))
    uploads.close()
    plain, dag = statistics.median(times["plain"]), statistics.median(times["dagster"])
    return {"plain": plain, "dagster": dag, "overhead": dag / plain - 1, "rate": n / plain}


# -- main -----------------------------------------------------------------------------------------


def chain_table(work: Path, blocks: int, sqs_lag: float) -> None:
    rows = []
    for poll in (0.25, 0.05):
        url = f"sqlite://{work}/chain-{poll}.db"
        delays = chain_delays(
            work / f"chain-{poll}", url, blocks=blocks, drain={}, poll_seconds=poll, workers=2
        )
        rows.append(("embedded (exact counts: lag 0.2 s, 2 readings)", f"poll {poll:g} s", delays, 0.2))
    with stand_in(20, ["chain"]) as endpoint:
        drain = {"drain_lag_seconds": sqs_lag, "drain_zero_readings": 3}
        url = queue_url(endpoint, "chain")
        delays = chain_delays(
            work / "chain-sqs", url, blocks=blocks, drain=drain, poll_seconds=0.25, workers=2
        )
        rows.append(
            (
                f"SQS stand-in 20 ms (approximate: lag {sqs_lag:g} s, 3 readings)",
                "poll 0.25 s",
                delays,
                sqs_lag,
            )
        )
    print("## Chain delay: last task of block k done -> run of block k+1 created\n")
    print("| queue | sensor | median s | max s | median minus lag s |")
    print("|---|---|---|---|---|")
    for queue, sensor, d, lag in rows:
        med = statistics.median(d)
        print(f"| {queue} | {sensor} | {med:.2f} | {max(d):.2f} | {med - lag:.2f} |")


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """moto's server (SQS and S3) over HTTP on loopback; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _moto_queue(endpoint: str, name: str) -> str:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    return str(sqs.create_queue(QueueName=name)["QueueUrl"])


def _s3_ledger(endpoint: str, bucket: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/ledger?endpoint_url={endpoint}"


def ledger_table(work: Path, blocks: int, sqs_lag: float) -> None:
    """Chain delay with the completion ledger beside the count-based drain (issue 14)."""
    rows = []
    sqs_drain = {"drain_lag_seconds": sqs_lag, "drain_zero_readings": 3}
    real_lag = {"drain_lag_seconds": 60.0, "drain_zero_readings": 3}
    with moto_endpoint() as moto, stand_in(20, ["counts", "exact"]) as endpoint:
        d = chain_delays(
            work / "l-counts",
            queue_url(endpoint, "counts"),
            blocks=blocks,
            drain=sqs_drain,
            poll_seconds=0.25,
            workers=2,
        )
        rows.append((f"SQS stand-in 20 ms, counts (lag {sqs_lag:g} s; AWS needs 60 s)", d))
        d = chain_delays(
            work / "l-exact",
            queue_url(endpoint, "exact"),
            blocks=blocks,
            drain=real_lag,
            poll_seconds=0.25,
            workers=2,
            ledger_url=_s3_ledger(moto, "standin"),
        )
        rows.append(("SQS stand-in 20 ms, ledger on S3 (moto), count lag 60 s", d))
        d = chain_delays(
            work / "l-moto",
            _moto_queue(moto, "chain"),
            blocks=blocks,
            drain=real_lag,
            poll_seconds=0.25,
            workers=2,
            ledger_url=_s3_ledger(moto, "moto"),
        )
        rows.append(("moto SQS, ledger on S3 (moto), count lag 60 s", d))
    print("\n## Chain delay with the completion ledger: last task of block k -> run of block k+1\n")
    print("| queue and drain | median s | max s | target <= 10 s |")
    print("|---|---|---|---|")
    for name, d in rows:
        print(f"| {name} | {statistics.median(d):.2f} | {max(d):.2f} | {'yes' if max(d) <= 10 else 'NO'} |")


def upload_table(work: Path, tasks: int, rounds: int) -> None:
    counter = iter(range(10**6))
    shard = tasks // 4
    embedded = Uploads(lambda: f"sqlite://{work}/upload-{next(counter)}.db", shard)
    results = [("embedded", upload_overhead(embedded, tasks, rounds))]
    with stand_in(20, ["upload"], store=False) as endpoint:
        for engine in ("boto3", "fast"):
            sqs = Uploads(lambda: queue_url(endpoint, "upload"), shard, engine)
            results.append((f"SQS stand-in 20 ms, {engine} engine", upload_overhead(sqs, tasks, rounds)))
    print("\n## Upload: block upload asset (4 shards) vs plain insert_all, same tasks, same process\n")
    print("| queue | tasks | plain s | Dagster job s | overhead | plain tasks/s | target <= 10% |")
    print("|---|---|---|---|---|---|---|")
    for queue, r in results:
        verdict = "yes" if r["overhead"] <= 0.10 else "NO"
        print(
            f"| {queue} | {tasks:,} | {r['plain']:.2f} | {r['dagster']:.2f} | {100 * r['overhead']:+.1f}% "
            f"| {r['rate']:,.0f} | {verdict} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000, help="tasks per upload (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=6, help="blocks in the chain runs (default 6)")
    parser.add_argument("--sqs-lag", type=float, default=3.0, help="SQS chain's drain lag (default 3 s)")
    parser.add_argument("--quick", action="store_true", help="50,000 tasks, 1 round, 4 blocks")
    parser.add_argument(
        "--only", choices=("chain", "daemon", "upload", "ledger"), default=None, help="run one part only"
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds, args.blocks = 50_000, 1, 4
    warnings.filterwarnings("ignore", message=r"Parameter `owners`", module=r"dagster\.")
    work = Path(tempfile.mkdtemp(prefix="tqo-bench-dagster-"))
    isolate_aws(str(work))
    print(f"# bench/dagster_overhead.py: tasks={args.tasks:,} rounds={args.rounds} blocks={args.blocks}\n")
    if args.only in (None, "chain"):
        chain_table(work, args.blocks, args.sqs_lag)
    if args.only in (None, "daemon"):
        daemon_table(work, args.blocks)
    if args.only in (None, "ledger"):
        ledger_table(work, args.blocks, args.sqs_lag)
    if args.only in (None, "upload"):
        upload_table(work, args.tasks, args.rounds)


if __name__ == "__main__":
    main()
