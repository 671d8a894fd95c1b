"""``tqo demo``: the example's block assets on this machine, no AWS account needed.

It starts a few worker processes on an embedded queue in a temporary directory,
then drives the example deployment (:mod:`.example`) exactly as the Dagster
daemon would: it materializes the ``volume`` asset, evaluates the block-chain
sensor, executes each requested block upload in process, and repeats until the
series is complete; then it evaluates the automation conditions, which
materialize ``verified`` (the output checked against ``np.cumsum``).

With ``DAGSTER_HOME`` set it records into that Dagster instance, so
``dagster dev`` shows the demo's materializations and check results afterwards;
otherwise it uses a temporary instance. The same run works against SQS:
``tqo demo -- --queue-url https://sqs...``.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

_SUMMARY = "Run the example block assets locally and check the result against numpy."

QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
"""Run config that keeps Dagster's per-event console logging out of the demo's output."""


def quiet_run_config(job: Any, partition_key: str | None) -> dict[str, Any]:
    """The run config a daemon-launched run of ``partition_key`` gets, with console logs at ERROR."""
    config = job.partitioned_config
    base = dict(config.get_run_config_for_partition_key(partition_key)) if config and partition_key else {}
    return {**base, **QUIET_RUN_CONFIG}


@dataclass
class ChainOutcome:
    """How driving a series ended."""

    complete: bool
    reason: str
    runs: list[tuple[str, str, bool]] = field(default_factory=list)
    """``(partition key, run id, success)`` of every run executed, in order."""
    seconds: float = 0.0


def drive_chain(
    defs: Any,
    instance: Any,
    *,
    job_name: str,
    sensor_name: str,
    timeout_seconds: float = 120.0,
    idle_seconds: float = 0.02,
    on_tick: Callable[[str, dict[str, Any]], object] | None = None,
    on_run: Callable[[str, Any], object] | None = None,
    stop: Callable[[], str | None] | None = None,
) -> ChainOutcome:
    """Evaluate a chain sensor and execute its run requests in process until the series ends.

    Works with both chain sensors (:mod:`.chain` for assets, :mod:`.sensors` for
    the op job). Ends when the cursor says the series is complete, when the
    sensor halts (its skip reason starts with ``halted``), when ``stop()``
    returns a reason, or after ``timeout_seconds``. ``on_tick`` gets the skip
    reason and the cursor as a dict.
    """
    import dagster as dg

    job = defs.resolve_job_def(job_name)
    sensor = defs.resolve_sensor_def(sensor_name)
    began = time.monotonic()
    cursor: str | None = None
    outcome = ChainOutcome(False, "")
    while True:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
        ) as context:
            data = sensor.evaluate_tick(context)
        cursor = data.cursor
        state = json.loads(cursor) if cursor else {}
        for request in data.run_requests:
            result = job.execute_in_process(
                partition_key=request.partition_key,
                tags=request.tags,
                instance=instance,
                run_config=quiet_run_config(job, request.partition_key),
                raise_on_error=False,
            )
            outcome.runs.append((str(request.partition_key), result.run_id, result.success))
            if on_run is not None:
                on_run(str(request.partition_key), result)
        reason = data.skip_message or ""
        if on_tick is not None and reason:
            on_tick(reason, state)
        stopped = stop() if stop is not None else None
        if state.get("complete") or reason.startswith("halted") or stopped:
            outcome.complete = bool(state.get("complete"))
            outcome.reason = stopped or reason
            break
        if time.monotonic() - began > timeout_seconds:
            outcome.reason = f"timed out after {timeout_seconds:g}s; last state: {reason}"
            break
        if not data.run_requests:
            time.sleep(idle_seconds)
    outcome.seconds = time.monotonic() - began
    return outcome


def run_automation(defs: Any, instance: Any, cursor: Any = None) -> tuple[list[Any], Any]:
    """Evaluate the automation conditions once, as Dagster's automation sensor would.

    Materializes what they request (in process) and returns the run results and
    the evaluation cursor for the next call.
    """
    import dagster as dg

    # the selection the automation sensor targets; passing it avoids Dagster's beta default
    selection = dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks()
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=cursor
    )
    runs = []
    for key in sorted(defs.resolve_asset_graph().get_all_asset_keys()):
        for partition in sorted(result.get_requested_partitions(key), key=str):
            run = dg.materialize(
                [defs.resolve_assets_def(key)],
                instance=instance,
                resources=defs.resources,
                partition_key=partition,
                run_config=QUIET_RUN_CONFIG,
                raise_on_error=False,
            )
            runs.append(run)
    return runs, result.cursor


def worker_command(url: str, module: str, *, lease_seconds: float = 60.0) -> list[str]:
    """A worker process that imports ``module`` and polls ``url`` eagerly."""
    return [
        sys.executable,
        "-m",
        "tq_orchestrate.worker",
        url,
        "--import",
        module,
        "--create",  # workers start before the first block is queued
        "--lease-seconds",
        str(lease_seconds),
        "--num-tasks",
        "4",
        "--wait-seconds",
        "0.5",
        "--min-backoff",
        "0.05",
        "--max-backoff",
        "0.25",
        "--retry-delay",
        "0.5",
        "--log-level",
        "WARNING",
    ]


@contextlib.contextmanager
def worker_processes(
    count: int,
    url: str,
    module: str,
    *,
    log_dir: Path,
    python_path: str | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` workers (stderr to ``log_dir``); SIGTERM them on exit, kill if they linger.

    ``extra_args`` are appended to each worker's command line (e.g. ``--ledger-url URL``).

    ``python_path`` is prepended to PYTHONPATH (and is the workers' directory) when
    ``module`` is not installed, e.g. tasks in a checkout.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (python_path, os.environ.get("PYTHONPATH")) if p),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with open(log_dir / f"worker-{i}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [*worker_command(url, module), *extra_args],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=python_path or log_dir,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Display:
    """One status line per change; on a terminal the drain line is rewritten in place."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.began = time.monotonic()
        self.tty = out.isatty()
        self.last = ""
        self.open_line = False

    def line(self, text: str, *, transient: bool = False) -> None:
        if text == self.last:
            return
        self.last = text
        stamp = f"[{time.monotonic() - self.began:6.2f}s] {text}"
        if transient and not self.tty:
            return
        if self.tty and transient:
            self.out.write("\r\x1b[2K" + stamp[:150])
            self.open_line = True
        else:
            self.out.write(("\r\x1b[2K" if self.open_line else "") + stamp + "\n")
            self.open_line = False
        self.out.flush()


def _load_example() -> ModuleType:
    import importlib

    return importlib.import_module("tq_orchestrate.orchestration.example.pipeline")


def run_demo(
    *,
    blocks: int = 4,
    workers: int = 2,
    queue_url: str | None = None,
    workdir: str | None = None,
    block_depth: int = 8,
    height: int = 256,
    width: int = 256,
    tile: int = 32,
    seed: int = 0,
    drain_lag_seconds: float | None = None,
    timeout_seconds: float = 120.0,
    out: IO[str] | None = None,
) -> int:
    """Run the example block assets end to end; return 0 when ``verified`` materialized."""
    out = out or sys.stdout
    try:
        example = _load_example()
    except ImportError as e:
        out.write(f"tqo demo: cannot import the example deployment ({e}); install tq-orchestrate[dagster]\n")
        return 2
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        # Dagster 1.13 copies sensors with `owners=[]` and then warns that `owners` is beta
        warnings.filterwarnings("ignore", message=r"Parameter `owners`", module=r"dagster\.")
        work = (
            Path(workdir)
            if workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tqo-demo-")))
        )
        work.mkdir(parents=True, exist_ok=True)
        return _run(
            example,
            work,
            blocks=blocks,
            workers=workers,
            queue_url=queue_url or f"sqlite://{work / 'queue.db'}",
            volume_config={"block_depth": block_depth, "height": height, "width": width, "tile": tile},
            seed=seed,
            drain_lag_seconds=drain_lag_seconds,
            timeout_seconds=timeout_seconds,
            display=_Display(out),
        )


@contextlib.contextmanager
def _instance(display: "_Display") -> Iterator[Any]:
    """The DAGSTER_HOME instance when set (so `dagster dev` shows the demo), else a temporary one."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            display.line(f"recording into the Dagster instance at {os.environ['DAGSTER_HOME']}")
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def _run(
    example: ModuleType,
    work: Path,
    *,
    blocks: int,
    workers: int,
    queue_url: str,
    volume_config: dict[str, int],
    seed: int,
    drain_lag_seconds: float | None,
    timeout_seconds: float,
    display: "_Display",
) -> int:
    from .resources import TaskQueueResource

    root = work / "data"
    resource = TaskQueueResource(queue_url=queue_url, drain_lag_seconds=drain_lag_seconds)
    defs = example.build_definitions(
        root=str(root), blocks=blocks, queue=resource, tick_budget_seconds=2.0, poll_seconds=0.05
    )
    side = volume_config["height"], volume_config["width"], volume_config["tile"]
    tiles = -(-side[0] // side[2]) * -(-side[1] // side[2])
    display.line(
        f"tqo demo: volume {blocks * volume_config['block_depth']}x{side[0]}x{side[1]} in {blocks} blocks x "
        f"{tiles} tasks, {workers} workers, queue {queue_url}"
    )
    with _instance(display) as instance:
        if not _materialize_volume(defs, instance, example, {**volume_config, "seed": seed}):
            display.line("FAILED: the volume asset did not materialize")
            return 1
        _, automation = run_automation(defs, instance)  # the baseline tick, as the daemon's first
        with worker_processes(workers, queue_url, example.TASKS_MODULE, log_dir=work) as procs:
            outcome = _drive(defs, instance, example, procs, work, timeout_seconds, display)
        if not outcome.complete:
            display.line(f"FAILED: {outcome.reason}")
            return 1
        display.line(f"series complete: {blocks} blocks in {outcome.seconds:.2f}s")
        runs, _ = run_automation(defs, instance, automation)
    return _report_verified(runs, display)


def _materialize_volume(defs: Any, instance: Any, example: ModuleType, config: dict[str, int]) -> bool:
    import dagster as dg

    result = dg.materialize(
        [defs.resolve_assets_def(example.VOLUME)],
        instance=instance,
        run_config={**QUIET_RUN_CONFIG, "ops": {example.VOLUME: {"config": config}}},
        raise_on_error=False,
    )
    return bool(result.success)


def _drive(
    defs: Any,
    instance: Any,
    example: ModuleType,
    procs: list[subprocess.Popen[bytes]],
    work: Path,
    timeout_seconds: float,
    display: "_Display",
) -> ChainOutcome:
    def stop() -> str | None:
        dead = [p for p in procs if p.poll() is not None]
        if len(dead) == len(procs):
            return f"all workers exited (codes {[p.returncode for p in dead]}); see {work}/worker-*.log"
        return None

    return drive_chain(
        defs,
        instance,
        job_name=f"{example.NAME}_upload_job",
        sensor_name=f"{example.NAME}_chain",
        timeout_seconds=timeout_seconds,
        on_tick=lambda reason, _: display.line(reason, transient=not reason.startswith(("halted", "series"))),
        on_run=lambda key, result: display.line(_describe_run(key, result)),
        stop=stop,
    )


def _report_verified(runs: list[Any], display: "_Display") -> int:
    if not runs:
        display.line("CHECK FAILED: the automation condition did not request `verified`")
        return 1
    result = runs[0]
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        message = failure.step_failure_data.error.message.strip() if failure is not None else "run failed"
        display.line(f"CHECK FAILED: verified did not materialize: {message}")
        return 1
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    message = metadata["result"].value
    display.line(f"check passed (verified materialized by its automation condition): {message}")
    return 0


def _describe_run(key: str, result: Any) -> str:
    if not result.success:
        return f"block {key}: upload run {result.run_id} FAILED"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    tasks, seconds, rate = (metadata[k].value for k in ("tasks", "upload seconds", "tasks/s"))
    return f"block {key}: uploaded {tasks} tasks in {seconds:.3f}s ({rate:,.0f} tasks/s)"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry (``tqo demo -- --help``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="tqo demo", description=_SUMMARY)
    parser.add_argument(
        "--blocks", type=int, default=4, help="z-slab blocks, run one after another (default 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    parser.add_argument(
        "--queue-url", default=None, help="queue URL (default: embedded queue in the work dir)"
    )
    parser.add_argument("--workdir", default=None, help="keep data and logs here (default: a temp dir)")
    parser.add_argument("--block-depth", type=int, default=8, help="z-slices per block (default 8)")
    parser.add_argument("--size", type=int, default=256, help="y and x size of the volume (default 256)")
    parser.add_argument(
        "--tile", type=int, default=32, help="tile edge; one task per tile per block (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the volume (default 0)")
    parser.add_argument("--drain-lag-seconds", type=float, default=None, help="override the drain lag")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.blocks < 1 or args.workers < 1:
        parser.error("--blocks and --workers must be at least 1")
    return run_demo(
        blocks=args.blocks,
        workers=args.workers,
        queue_url=args.queue_url,
        workdir=args.workdir,
        block_depth=args.block_depth,
        height=args.size,
        width=args.size,
        tile=args.tile,
        seed=args.seed,
        drain_lag_seconds=args.drain_lag_seconds,
        timeout_seconds=args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
