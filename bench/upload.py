"""Upload throughput into SQS: python-task-queue vs our boto3 engine vs our fast engine.

Run: ``python bench/upload.py [--quick] [--rounds 3]`` (see ``--help``). Not a test.
``--small --rounds 5 --latencies 20`` times small uploads (1,000 and 10,000
prebuilt tasks) from ``TaskQueue('sqs://name')`` to ``insert_all`` returning, in
a fresh process each, set-up included; imports are timed apart.

Two in-memory SQS stand-ins (``python -m tq_orchestrate.testing.sqs_server``,
one with 0 ms and one with 20 ms of latency per response) run as their own
processes on 127.0.0.1. Every measurement is a fresh client process that
imports its package, resolves the queue, then uploads N small tasks (the same
``NoopTask(i, "block-0/tile")`` shape in both packages, from a generator, or a
sliceable range for ``parallel=2``). Rounds interleave the clients, so drift in
machine load hits all of them alike.

Every client finds the stand-in the same way: ``AWS_ENDPOINT_URL_SQS``, which
botocore (and so python-task-queue's ``boto3.client('sqs', ...)``) honours; no
client code is patched. Client CPU is ``getrusage`` user+system of the client
process and its reaped children during the upload, divided by the number of
``SendMessageBatch`` calls (tasks / 10). Server CPU per call comes from
``/proc/<pid>/stat``. The peak-RSS run uploads a 1,000,000-task generator with
the fast engine in a fresh process and reads ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "bench-upload"
CLIENTS = ("python-task-queue", "boto3-engine", "fast-engine")
TARGETS = {
    "fast >= 10x python-task-queue (20 ms, 1 process)": ("fast-engine", 20, 1, "ratio", 10.0),
    "fast >= 25,000 tasks/s (20 ms, 1 process)": ("fast-engine", 20, 1, "rate", 25_000.0),
    "boto3 engine >= 1.5x python-task-queue (20 ms, 1 process)": ("boto3-engine", 20, 1, "ratio", 1.5),
    "fast, 2 processes >= 50,000 tasks/s (20 ms)": ("fast-engine", 20, 2, "rate", 50_000.0),
}


# -- the client process ----------------------------------------------------------------------------


class TaskRange:
    """A sliceable, sized iterable of bench tasks (what ``parallel=N`` shards)."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, part: slice) -> TaskRange:
        start, stop, _ = part.indices(len(self))
        return TaskRange(self.start + start, self.start + stop)

    def __iter__(self) -> Iterator[Any]:
        from bench._tasks import NoopTask

        return (NoopTask(i, "block-0/tile") for i in range(self.start, self.stop))


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """Upload ``spec["tasks"]`` tasks with one client; return rate, CPU and RSS figures."""
    sys.path.insert(0, str(ROOT))
    client, n, parallel = spec["client"], int(spec["tasks"]), int(spec["parallel"])
    if client == "python-task-queue":
        import taskqueue

        from bench import _tasks

        queue = taskqueue.TaskQueue(f"sqs://{QUEUE}", progress=False)
        upload = lambda: queue.insert(_tasks.theirs(n), total=n, parallel=parallel)  # noqa: E731
        body = len(json.dumps({"payload": next(iter(_tasks.theirs(1))).payload(), "queueName": QUEUE}))
    else:
        from tq_orchestrate import TaskQueue

        options: dict[str, Any] = {"engine": "fast" if client == "fast-engine" else "boto3"}
        if spec.get("concurrency"):
            options["concurrency"] = int(spec["concurrency"])
        ours = TaskQueue(f"sqs://{QUEUE}", progress=False, **options)
        ours.backend.target if client == "fast-engine" else ours.backend.queue_url  # noqa: B018 - resolve now
        tasks: Any = TaskRange(0, n) if parallel > 1 else iter(TaskRange(0, n))
        upload = lambda: ours.insert_all(tasks, parallel=parallel)  # noqa: E731
        body = len(ours.encode(next(iter(TaskRange(0, 1)))))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, start = _cpu_seconds(), time.perf_counter()
    inserted = upload()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    if inserted != n:
        raise SystemExit(f"{client}: inserted {inserted} of {n}")
    return {
        "rate": n / seconds,
        "cpu_ms_per_call": 1000 * cpu / math.ceil(n / 10),
        "seconds": seconds,
        "body_bytes": body,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_small_client(spec: dict[str, Any]) -> dict[str, Any]:
    """A small upload as a fresh process does it: import, build the tasks, then time
    ``TaskQueue('sqs://name')`` through ``insert_all`` returning (set-up included).

    Each client imports only its own package (the task class is defined here, not
    in :mod:`bench._tasks`, which imports both).
    """
    client, n = spec["client"], int(spec["tasks"])
    start = time.perf_counter()
    if client == "python-task-queue":
        import taskqueue

        imported = time.perf_counter() - start

        class UpstreamNoopTask(taskqueue.RegisteredTask):  # type: ignore[misc]
            def __init__(self, n: int = 0, label: str = "") -> None:
                super().__init__(n, label)

        tasks: list[Any] = [UpstreamNoopTask(i, "block-0/tile") for i in range(n)]
        start = time.perf_counter()
        inserted = taskqueue.TaskQueue(f"sqs://{QUEUE}", progress=False).insert(tasks, total=n)
    else:
        import tq_orchestrate

        imported = time.perf_counter() - start

        class NoopTask(tq_orchestrate.RegisteredTask):
            def __init__(self, n: int = 0, label: str = "") -> None:
                super().__init__(n, label)

        tasks = [NoopTask(i, "block-0/tile") for i in range(n)]
        start = time.perf_counter()
        inserted = tq_orchestrate.TaskQueue(f"sqs://{QUEUE}", progress=False).insert_all(tasks)
    seconds = time.perf_counter() - start
    if inserted != n:
        raise SystemExit(f"{client}: inserted {inserted} of {n}")
    return {"seconds": seconds, "import_seconds": imported, "rate": n / seconds}


def small_main(args: argparse.Namespace) -> None:
    """``--small``: 1,000 and 10,000 prebuilt tasks, fresh process each, interleaved rounds."""
    sizes = [int(x) for x in args.small_sizes.split(",")]
    clients = ("python-task-queue", "tq-orchestrate")
    latency = int(args.latencies.split(",")[-1])
    server = start_server(latency)
    results: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    try:
        for round_no in range(1, args.rounds + 1):
            for n in sizes:
                for client in clients:
                    result = measure(server, {"client": client, "tasks": n, "small": True}, timeout=300)
                    results[(client, n)].append(result)
                    print(f"round {round_no}: {client:18} {n:7,d} tasks {1000 * result['seconds']:8.0f} ms  "
                          f"(import {1000 * result['import_seconds']:.0f} ms, load {result['load']:.1f})",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        server.proc.terminate()
        server.proc.wait(30)
    print(f"\nSmall uploads from a fresh process, {latency} ms stand-in, median of {args.rounds} "
          "interleaved rounds;\ntime from TaskQueue(...) to insert_all returning "
          "(imports reported apart)\n")  # fmt: skip
    print(f"{'tasks':>7}  {'client':18} {'upload ms':>10} {'import ms':>10} {'vs upstream':>12}")
    for n in sizes:
        base = results[("python-task-queue", n)]
        for client in clients:
            runs = results[(client, n)]
            ms = 1000 * statistics.median(r["seconds"] for r in runs)
            imp = 1000 * statistics.median(r["import_seconds"] for r in runs)
            ratio = ""
            if client != "python-task-queue":
                pairs = zip(runs, base, strict=True)
                value = statistics.median(b["seconds"] / r["seconds"] for r, b in pairs)
                ratio = f"{value:.1f}x"
            print(f"{n:7,d}  {client:18} {ms:10.0f} {imp:10.0f} {ratio:>12}")


# -- the driver ------------------------------------------------------------------------------------------


@dataclass
class Server:
    latency_ms: int
    proc: subprocess.Popen[str]
    endpoint: str

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(latency_ms: int) -> Server:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tq_orchestrate.testing.sqs_server", "--latency-ms", str(latency_ms),
         "--queue", QUEUE, "--no-store"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"stand-in server did not start (got {endpoint!r})")
    return Server(latency_ms, proc, endpoint)


def client_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_SQS=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONPATH=str(ROOT),
    )
    return env


def measure(server: Server, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    server_cpu = server.cpu_seconds()
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        cwd=ROOT, env=client_env(server.endpoint), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"client {spec} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu_ms_per_call"] = (
        1000 * (server.cpu_seconds() - server_cpu) / math.ceil(spec["tasks"] / 10)
    )
    result["load"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks per run (about a minute in all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latencies", default="0,20", help="server latencies in ms (comma-separated)")
    parser.add_argument("--processes", default="1,2", help="upload processes per client (comma-separated)")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--fast-concurrency", type=int, default=0, help="batches in flight (0: library default)"
    )
    parser.add_argument(
        "--boto3-concurrency", type=int, default=0, help="batches in flight (0: library default)"
    )
    parser.add_argument(
        "--rss-tasks", type=int, default=1_000_000, help="tasks in the peak-RSS run (0: skip)"
    )
    parser.add_argument(
        "--small", action="store_true", help="small uploads from fresh processes (set-up included)"
    )
    parser.add_argument("--small-sizes", default="1000,10000", help="tasks per small upload")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_small_client(spec) if spec.get("small") else run_client(spec)))
        return
    if args.small:
        small_main(args)
        return

    scale = 0.25 if args.quick else 1.0
    sizes = {"python-task-queue": 10_000, "boto3-engine": 30_000, "fast-engine": 150_000}
    concurrency = {"boto3-engine": args.boto3_concurrency, "fast-engine": args.fast_concurrency}
    clients = [c for c in args.clients.split(",") if c]
    latencies = [int(x) for x in args.latencies.split(",")]
    processes = [int(x) for x in args.processes.split(",")]
    servers = {ms: start_server(ms) for ms in latencies}
    results: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    try:
        for round_no in range(1, args.rounds + 1):
            for ms in latencies:
                for procs in processes:
                    for client in clients:
                        spec = {"client": client, "parallel": procs, "tasks": int(sizes[client] * scale),
                                "concurrency": concurrency.get(client, 0)}  # fmt: skip
                        result = measure(servers[ms], spec, timeout=900)
                        results[(client, ms, procs)].append(result)
                        print(f"round {round_no}: {client:18} {ms:3d} ms  {procs} proc  "
                              f"{result['rate']:9,.0f} tasks/s  {result['cpu_ms_per_call']:.3f} ms CPU/call  "
                              f"(load {result['load']:.1f})",
                              file=sys.stderr, flush=True)  # fmt: skip
        rss = None
        if args.rss_tasks:
            spec = {"client": "fast-engine", "parallel": 1, "tasks": args.rss_tasks,
                    "concurrency": args.fast_concurrency}  # fmt: skip
            rss = measure(servers[max(latencies)], spec, timeout=1800)
    finally:
        for server in servers.values():
            server.proc.terminate()
            server.proc.wait(30)
    report(results, clients, latencies, processes, rss, args)


def report(
    results: dict[tuple[str, int, int], list[dict[str, Any]]],
    clients: list[str],
    latencies: list[int],
    processes: list[int],
    rss: dict[str, Any] | None,
    args: argparse.Namespace,
) -> None:
    ratios: dict[tuple[str, int, int], float] = {}
    print(f"\nUpload into the SQS stand-in, median of {args.rounds} interleaved rounds"
          f"{' (--quick)' if args.quick else ''}; {os.cpu_count()} cores\n")  # fmt: skip
    columns = ("tasks/s", "client CPU", "server CPU", "vs upstream")
    header = f"{'latency':>7} {'procs':>5}  {'client':18} " + " ".join(f"{c:>11}" for c in columns)
    print(
        header + "\n" + f"{'':>7} {'':>5}  {'':18} {'':>11} {'ms/call':>11} {'ms/call':>11} {'(median)':>11}"
    )
    print("-" * len(header))
    for ms in latencies:
        for procs in processes:
            base = results.get(("python-task-queue", ms, procs))
            for client in clients:
                runs = results[(client, ms, procs)]
                rate = statistics.median(r["rate"] for r in runs)
                cpu = statistics.median(r["cpu_ms_per_call"] for r in runs)
                server = statistics.median(r["server_cpu_ms_per_call"] for r in runs)
                ratio = ""
                if base and client != "python-task-queue":
                    value = statistics.median(r["rate"] / b["rate"] for r, b in zip(runs, base, strict=True))
                    ratios[(client, ms, procs)] = value
                    ratio = f"{value:.1f}x"
                print(
                    f"{ms:>5} ms {procs:>5}  {client:18} {rate:11,.0f} {cpu:11.3f} {server:11.3f} {ratio:>11}"
                )
    loads = [r["load"] for runs in results.values() for r in runs]
    print(f"\n1-minute load average after the runs: {min(loads):.1f} to {max(loads):.1f} "
          f"(other work on the machine skews the numbers above {os.cpu_count()})")  # fmt: skip
    if rss is not None:
        print(f"\nPeak RSS uploading {args.rss_tasks:,} tasks from a generator (fast engine, 1 process, "
              f"{max(latencies)} ms): {rss['peak_rss_mb']:.0f} MB "
              f"(after imports: {rss['rss_before_mb']:.0f} MB; {rss['rate']:,.0f} tasks/s)")  # fmt: skip
    print("\nTargets:")
    for name, (client, ms, procs, kind, goal) in TARGETS.items():
        runs = results.get((client, ms, procs))
        if not runs:
            continue
        value = (
            ratios.get((client, ms, procs)) if kind == "ratio" else statistics.median(r["rate"] for r in runs)
        )
        if value is not None:
            print(f"  {'PASS' if value >= goal else 'MISS'}  {name}: {value:,.1f}")
    if rss is not None:
        verdict = "PASS" if rss["peak_rss_mb"] < 150 else "MISS"
        print(f"  {verdict}  peak RSS < 150 MB: {rss['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
