"""Scenarios shared by the reliability suite (``tests/reliability``) and ``bench/soak.py``.

Each scenario runs real code paths (``TaskQueue.insert_all``, worker processes
started as ``python -m tq_orchestrate.worker``, the SQS stand-in with fault
injection) at a size the caller picks, and returns :class:`Figures`: what was
injected, inserted, completed, lost and repeated. Tests call them small and
assert on the figures; the soak calls them big and prints the table.

Tasks are :mod:`tests.tasks_fixture`'s: ``WorkerAppendTask(path, text)``
appends ``text`` to a completion log, so completions are counted by id across
processes, including processes killed with ``kill -9``.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.tasks_fixture"
DEADLINE = 120.0


@dataclass
class Figures:
    """What one scenario did; a row of the soak table."""

    scenario: str
    faults: int = 0
    """Faults injected: kills, refused entries, throttles, 500s, dropped connections..."""
    inserted: int = 0
    completed: int = 0
    """Distinct tasks that completed (or, for uploads, distinct tasks stored)."""
    lost: int = 0
    repeats: int = 0
    """Extra executions (or extra stored copies) beyond one per task."""
    hostile_tried: int = 0
    hostile_refused: int = 0
    seconds: float = 0.0
    leased_twice: int | None = None
    """Distinct tasks delivered more than once (receive count > 1); None where not measured."""
    counted: tuple[int | None, int | None] = (None, None)
    """The queue's own (inserted, completed) totals, where it keeps them."""
    notes: list[str] = field(default_factory=list)

    @property
    def tasks_per_second(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = DEADLINE, pause: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


# -- completion logs ------------------------------------------------------------------


class CompletionLog:
    """Reads a growing completion log incrementally; counts each id's lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._offset = 0
        self._partial = b""

    def refresh(self) -> Counter[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.counts
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        self.counts.update(line.decode() for line in lines if line)
        return self.counts

    def distinct(self) -> int:
        return len(self.refresh())


def append_tasks(path: Path, ids: Sequence[str]) -> Iterator[Any]:
    """``WorkerAppendTask(path, id)`` for each id (a generator: constant memory)."""
    from tests.tasks_fixture import WorkerAppendTask

    return (WorkerAppendTask(str(path), text) for text in ids)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def tally(expected: Sequence[str], seen: Counter[str]) -> tuple[int, int, int]:
    """(distinct completed of ``expected``, lost, repeats); raises if anything unexpected ran."""
    wanted = set(expected)
    strangers = set(seen) - wanted
    assert not strangers, f"tasks that were never inserted ran: {sorted(strangers)[:5]}"
    lost = len(wanted - set(seen))
    repeats = sum(count - 1 for count in seen.values())
    return len(wanted) - lost, lost, repeats


# -- worker processes -----------------------------------------------------------------


class WorkerProc:
    """A ``python -m tq_orchestrate.worker`` process logging to a file."""

    def __init__(self, url: str, log_path: Path, args: Sequence[str], env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        cmd = [sys.executable, "-m", "tq_orchestrate.worker", url, "--import", TASKS_MODULE, *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.wait()

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Make sure the process is gone (tests' clean-up)."""
        if self.alive():
            self.proc.kill()
        self.wait()

    def events(self) -> list[dict[str, Any]]:
        """Per-task JSON events (``--log-json``); a line cut by a kill is skipped."""
        import json

        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "outcome" in record:
                out.append(record)
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Workers:
    """Starts workers and stops every one that is left (a context manager)."""

    def __init__(self, url: str, workdir: Path, args: Sequence[str], env: dict[str, str] | None = None):
        self.url = url
        self.workdir = workdir
        self.args = list(args)
        self.env = env
        self.all: list[WorkerProc] = []

    def start(self) -> WorkerProc:
        w = WorkerProc(self.url, self.workdir / f"worker{len(self.all)}.log", self.args, self.env)
        self.all.append(w)
        return w

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.all if w.alive()]

    def stop_gracefully(self) -> list[int]:
        """SIGTERM every live worker once it polls (its handlers are set); return their exit codes."""
        live = self.alive()
        # a replacement may still be importing: SIGTERM then would kill it before it can handle it
        wait_for(lambda: all("polling" in w.text() or not w.alive() for w in live), "the workers to poll")
        time.sleep(0.2)  # the handler is installed just after the "polling" line
        for w in live:
            w.terminate()
        return [w.wait() for w in live]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.all:
            w.stop()


def worker_args(lease_seconds: float, *more: str) -> list[str]:
    return [
        "--lease-seconds",
        str(lease_seconds),
        "--num-tasks",
        "10",
        "--min-backoff",
        "0.05",
        "--max-backoff",
        "0.5",
        *more,
    ]


# -- worker crashes -------------------------------------------------------------------


def kill_workers_scenario(
    url: str,
    workdir: Path,
    n: int,
    *,
    label: str,
    workers: int = 3,
    kills: int = 5,
    lease_seconds: float = 3.0,
    seed: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = DEADLINE,
) -> Figures:
    """``n`` tasks drained by ``workers`` processes; ``kills`` random workers are kill -9'd.

    Kills happen at random points of progress (so they land mid-drain however
    fast the machine is), each replaced by a fresh worker. Returns once every
    task completed and the queue reads empty.
    """
    from tq_orchestrate import TaskQueue

    rng = random.Random(seed)
    log = workdir / f"{label}-done.txt"
    expected = ids("t", n)
    done = CompletionLog(log)
    thresholds = sorted(rng.uniform(0.05, 0.85) * n for _ in range(kills))
    killed = 0
    with TaskQueue(url, progress=False) as tq:
        assert tq.insert_all(append_tasks(log, expected)) == n
        start = time.monotonic()
        with Workers(url, workdir, worker_args(lease_seconds, "--log-json"), env) as pool:
            for _ in range(workers):
                pool.start()
            deadline = time.monotonic() + timeout
            while thresholds:
                assert time.monotonic() < deadline, f"{label}: timed out before kill {killed + 1}"
                if done.distinct() >= thresholds[0]:
                    thresholds.pop(0)
                    victim = rng.choice(pool.alive())
                    time.sleep(rng.uniform(0, 0.05))  # a random moment, not a batch boundary
                    assert victim.kill9() == -signal.SIGKILL
                    killed += 1
                    pool.start()
                time.sleep(0.005)
            wait_for(
                lambda: done.distinct() == n and tq.counts().pending == 0,
                f"{label}: every task to complete after {killed} kills",
                timeout=max(1.0, deadline - time.monotonic()),
            )
            seconds = time.monotonic() - start
            codes = pool.stop_gracefully()
            events = [e for w in pool.all for e in w.events()]
        assert codes == [0] * len(codes), f"{label}: surviving workers exited with {codes}"
        counts = tq.counts()
    completed, lost, repeats = tally(expected, done.refresh())
    twice = {e["id"] for e in events if int(e.get("receive_count", 1)) > 1}
    figures = Figures(label, killed, n, completed, lost, repeats, seconds=seconds, leased_twice=len(twice))
    figures.notes.append(f"pending after drain: {counts.pending}")
    return figures


# -- load: workers drain while a producer inserts -------------------------------------------


def load_scenario(
    url: str, workdir: Path, n: int, *, label: str, workers: int = 2, chunks: int = 20
) -> Figures:
    """``workers`` processes drain the queue while this process inserts ``n`` tasks.

    The producer inserts in ``chunks`` calls of ``insert_all`` once the workers poll.
    """
    from tq_orchestrate import TaskQueue

    log = workdir / f"{label}-done.txt"
    expected = ids("L", n)
    done = CompletionLog(log)
    args = worker_args(600, "--log-json", "--create")  # the workers start before the first insert
    with TaskQueue(url, progress=False) as tq, Workers(url, workdir, args) as pool:
        for _ in range(workers):
            pool.start()
        wait_for(lambda: all("polling" in w.text() for w in pool.all), "the workers to start polling")
        start = time.monotonic()
        produced: list[int] = []
        overlap: list[int] = []

        def produce() -> None:
            step = max(1, n // chunks)
            for lo in range(0, n, step):
                produced.append(tq.insert_all(append_tasks(log, expected[lo : lo + step])))
            overlap.append(n - done.distinct())

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: done.distinct() == n, f"{label}: {n} completions", timeout=DEADLINE + n / 500)
        seconds = time.monotonic() - start
        producer.join(DEADLINE)
        wait_for(lambda: tq.counts().pending == 0, f"{label}: the last deletes")
        codes = pool.stop_gracefully()
        counts = tq.counts()
        events = [e for w in pool.all for e in w.events()]
    assert sum(produced) == n, f"{label}: the producer inserted {sum(produced)}"
    assert codes == [0] * workers, f"{label}: workers exited with {codes}"
    completed, lost, repeats = tally(expected, done.refresh())
    twice = {e["id"] for e in events if int(e.get("receive_count", 1)) > 1}
    figures = Figures(label, 0, n, completed, lost, repeats, seconds=seconds, leased_twice=len(twice))
    figures.notes.append(
        f"queue counted inserted={counts.inserted} completed={counts.completed}; {len(events)} task events; "
        f"{overlap[0] if overlap else '?'} tasks still to run when the producer finished"
    )
    figures.counted = (counts.inserted, counts.completed)
    return figures


# -- producer crash -------------------------------------------------------------------


class Numbered:
    """``WorkerNoopTask(i)`` for ``i`` in ``range(start, stop)``: sized and sliceable."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, part: slice) -> Numbered:
        lo, hi, _ = part.indices(len(self))
        return Numbered(self.start + lo, self.start + hi)

    def __iter__(self) -> Iterator[Any]:
        from tests.tasks_fixture import WorkerNoopTask

        return (WorkerNoopTask(i) for i in range(self.start, self.stop))


def produce_forever(url: str, total: int, parallel: int) -> None:
    """Child process body: insert ``Numbered(0, total)`` until killed."""
    from tq_orchestrate import TaskQueue

    TaskQueue(url, progress=False).insert_all(Numbered(0, total), parallel=parallel)


def producer_crash_scenario(
    path: Path, *, parallel: int, batches: int, total: int = 10**8, group: bool = True
) -> Figures:
    """kill -9 of ``insert_all`` once ``batches`` batches are in.

    ``group`` kills the whole process group; otherwise only the process that
    called ``insert_all``: its upload processes must then stop by themselves.
    """
    from tq_orchestrate import TaskQueue

    url = f"sqlite://{path}"
    code = (
        "from tests.reliability._harness import produce_forever; "
        f"produce_forever({url!r}, {total}, {parallel})"
    )
    with TaskQueue(url, progress=False) as watcher:
        watcher.counts()  # creates the database before the child starts
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
        uploaders: list[int] = []
        try:
            goal = batches * 1000
            wait_for(lambda: (watcher.counts().inserted or 0) >= goal, f"{batches} batches to be inserted")
            uploaders = _children(child.pid)
            time.sleep(random.uniform(0, 0.05))
        finally:
            if group:
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.send_signal(signal.SIGKILL)
            child.wait(DEADLINE)
        assert child.returncode == -signal.SIGKILL
        if not group:  # the orphaned upload processes notice and exit
            assert len(uploaders) == parallel, f"upload processes: {uploaders}"
            try:
                wait_for(
                    lambda: not any(map(_running, uploaders)), "the orphaned upload processes to exit", 30
                )
            finally:
                for pid in filter(_running, uploaders):
                    os.kill(pid, signal.SIGKILL)
    rows = check_prefixes(path, total, parallel)
    label = "" if group else ", parent only"
    return Figures(f"producer kill -9 (parallel={parallel}{label})", 1, rows, rows)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux ``/proc``)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def check_prefixes(path: Path, total: int, parallel: int, batch: int = 1000) -> int:
    """The database is intact and each shard holds a prefix of whole batches; return the rows."""
    import tests.tasks_fixture  # noqa: F401 - WorkerNoopTask, to decode the rows
    from tq_orchestrate import totask
    from tq_orchestrate._upload import split_ranges

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        bodies = [body for (body,) in conn.execute("SELECT body FROM messages")]
        inserted, completed = conn.execute("SELECT inserted, completed FROM stats").fetchone()
    finally:
        conn.close()
    numbers = sorted(getattr(totask(body), "n") for body in bodies)  # noqa: B009 - every row a whole task
    assert (inserted, completed) == (len(numbers), 0)
    assert len(numbers) == len(set(numbers))
    for start, stop in split_ranges(total, parallel):
        shard = [i for i in numbers if start <= i < stop]
        assert shard == list(range(start, start + len(shard))), f"shard {start} is not a prefix"
        assert len(shard) % batch == 0, f"shard {start} holds a torn batch ({len(shard)} rows)"
    return len(numbers)


# -- hostile and bad input ----------------------------------------------------------------

CANARY_MODULE = "tests.reliability.canary"


@dataclass(frozen=True)
class Hostile:
    """One bad message body and the error it must meet (type and a phrase of its reason)."""

    name: str
    body: str | bytes
    errors: tuple[type[Exception], ...]
    phrase: str


def _fn(module: str, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str:
    import json

    return json.dumps([[module, name], args, kwargs or {}, None])


def _cls(name: str, **fields: Any) -> str:
    import json

    return json.dumps({"class": name, **fields})


def _typed(data: bytes, dtype: Any, shape: Any) -> str:
    import base64
    import json

    array = {"__ndarray__": base64.b64encode(data).decode(), "dtype": dtype, "shape": shape}
    return json.dumps({"class": "WorkerAppendTask", "path": "/nowhere", "text": array})


def hostile_cases(canary: str) -> list[Hostile]:
    """The table of bad messages; ``canary`` is a file any executed payload would write."""
    from tq_orchestrate.errors import DeserializationError, UnsafeTaskError

    bad: tuple[type[Exception], ...] = (DeserializationError,)
    unsafe: tuple[type[Exception], ...] = (UnsafeTaskError,)
    shell = f"touch {canary}"
    deep = 100_000
    cases = [
        # malformed JSON
        Hostile(
            "truncated JSON", '{"payload": {"class": "WorkerAppendTask", "path": "x"', bad, "not valid JSON"
        ),
        Hostile("not JSON at all", "rm -rf / --no-preserve-root", bad, "not valid JSON"),
        Hostile("empty body", "", bad, "not valid JSON"),
        Hostile(
            "trailing garbage", _cls("WorkerAppendTask", path="x", text="y") + " ;rm", bad, "not valid JSON"
        ),
        Hostile("single quotes", "{'class': 'WorkerAppendTask'}", bad, "not valid JSON"),
        # valid JSON, wrong shape
        Hostile("a number", "42", bad, "expected a RegisteredTask payload"),
        Hostile("a string", '"WorkerAppendTask"', bad, "expected a RegisteredTask payload"),
        Hostile("null", "null", bad, "expected a RegisteredTask payload"),
        Hostile("empty list", "[]", bad, "expected a RegisteredTask payload"),
        Hostile("envelope around a number", '{"payload": 5, "queueName": "q"}', bad, "expected a Registered"),
        Hostile("object without class", '{"path": "x", "text": "y"}', bad, "no 'class' field"),
        Hostile("class is a list", '{"class": ["WorkerAppendTask"]}', unsafe, "not a registered"),
        Hostile(
            "function payload of 3 items", '[["tests.tasks_fixture", "append_fn"], [], {}]', bad, "expected"
        ),
        Hostile(
            "function key of one part", '[["tests.tasks_fixture.append_fn"], [], {}, null]', bad, "must be"
        ),
        Hostile(
            "function args not a list",
            '[["tests.tasks_fixture", "append_fn"], "ab", {}, null]',
            bad,
            "must be",
        ),
        # unknown classes
        Hostile("unknown class", _cls("NoSuchTask", x=1), unsafe, "not a registered"),
        Hostile("plain class in a forbidden module", _cls("Canary"), unsafe, "not a registered"),
        Hostile("the base class itself", _cls("RegisteredTask"), unsafe, "not a registered"),
        Hostile("a builtin type", _cls("object"), unsafe, "not a registered"),
        Hostile("Popen by class name", _cls("Popen", args=["touch", canary]), unsafe, "not a registered"),
        Hostile("dotted class path", _cls("os.system", command=shell), unsafe, "not a registered"),
        Hostile(
            "__import__ in a class name", _cls(f"__import__('os').system('{shell}')"), unsafe, "registered"
        ),
        # disallowed modules and functions
        Hostile("os:system", _fn("os", "system", [shell]), unsafe, "not allowed"),
        Hostile("posix:system", _fn("posix", "system", [shell]), unsafe, "not allowed"),
        Hostile("subprocess:run", _fn("subprocess", "run", [["touch", canary]]), unsafe, "not allowed"),
        Hostile("subprocess:Popen", _fn("subprocess", "Popen", [["touch", canary]]), unsafe, "not allowed"),
        Hostile("builtins:eval", _fn("builtins", "eval", [f"open({canary!r}, 'w')"]), unsafe, "not allowed"),
        Hostile("builtins:exec", _fn("builtins", "exec", [f"open({canary!r}, 'w')"]), unsafe, "not allowed"),
        Hostile("builtins:__import__", _fn("builtins", "__import__", [CANARY_MODULE]), unsafe, "not allowed"),
        Hostile(
            "importlib:import_module", _fn("importlib", "import_module", [CANARY_MODULE]), unsafe, "allowed"
        ),
        Hostile("forbidden module's function", _fn(CANARY_MODULE, "touch", [canary]), unsafe, "not allowed"),
        Hostile("dotted attribute path", _fn("pathlib", "Path.touch", [canary]), unsafe, "not allowed"),
        Hostile("__main__", _fn("__main__", "main", []), unsafe, "not allowed"),
        Hostile(
            "unqueueable function of an allowed module",
            _fn("tests.tasks_fixture", "append_line", [canary, "x"]),
            unsafe,
            "not a registered @queueable",
        ),
        Hostile(
            "attribute path through an allowed module",
            _fn("tests.tasks_fixture", "os.system", [shell]),
            unsafe,
            "not a registered @queueable",
        ),
        Hostile(
            "globals of a queueable function",
            _fn("tests.tasks_fixture", "append_fn.__globals__", []),
            unsafe,
            "not a registered @queueable",
        ),
        Hostile(
            "a task class called as a function",
            _fn("tests.tasks_fixture", "WorkerAppendTask", [canary, "x"]),
            unsafe,
            "not a registered @queueable",
        ),
        # wrong constructor or function arguments
        Hostile("missing argument", _cls("WorkerAppendTask", path=canary), bad, "cannot construct"),
        Hostile(
            "unknown argument",
            _cls("WorkerAppendTask", path=canary, text="x", shell=shell),
            bad,
            "cannot construct",
        ),
        Hostile(
            "argument named self", _cls("WorkerAppendTask", self=1, path=canary, text="x"), bad, "construct"
        ),
        Hostile(
            "function missing an argument", _fn("tests.tasks_fixture", "append_fn", [canary]), bad, "wrong"
        ),
        Hostile(
            "function with an unknown keyword",
            _fn("tests.tasks_fixture", "append_fn", [canary, "x"], {"mode": "w"}),
            bad,
            "wrong arguments",
        ),
        Hostile(
            "constructor refuses the value", _cls("WorkerPickyTask", n=-1), (ValueError,), "n must be >= 0"
        ),
        # huge and deep
        Hostile("huge body of the wrong shape (1 MB)", "[" + "0," * 500_000 + "0]", bad, "expected"),
        Hostile(
            "huge unknown class (1 MB)", _cls("NoSuchTask", blob="x" * 1_000_000), unsafe, "not a registered"
        ),
        Hostile("deeply nested body", "[" * deep + "]" * deep, bad, "nested too deeply"),
        Hostile(
            "deeply nested argument",
            '{"class": "WorkerAppendTask", "path": ' + "[" * deep + "]" * deep + ', "text": "x"}',
            bad,
            "nested too deeply",
        ),
        Hostile(
            "integer of 5,000 digits",
            _cls("WorkerPickyTask")[:-1] + ', "n": ' + "9" * 5000 + "}",
            bad,
            "digits",
        ),
        # not UTF-8
        Hostile(
            "invalid UTF-8",
            b'{"class": "WorkerAppendTask", "path": "\xff\xfe", "text": "x"}',
            bad,
            "not UTF-8",
        ),
        Hostile("bare continuation bytes", b"\x80\x81\x82", bad, "not UTF-8"),
        # numbers JSON does not have
        Hostile("NaN", '{"class": "WorkerAppendTask", "path": NaN, "text": "x"}', bad, "NaN"),
        Hostile("Infinity", '{"class": "WorkerAppendTask", "path": "x", "text": Infinity}', bad, "Infinity"),
        Hostile("-Infinity", '{"class": "WorkerPickyTask", "n": -Infinity}', bad, "Infinity"),
        Hostile("overflowing float", '{"class": "WorkerPickyTask", "n": 1e400}', bad, "finite"),
        # typed numpy arrays that do not add up
        Hostile("array bytes short of the shape", _typed(b"\0" * 8, "<f4", [3]), bad, "do not fill"),
        Hostile("array bytes beyond the shape", _typed(b"\0" * 16, "<f4", [3]), bad, "do not fill"),
        Hostile("array of Python objects", _typed(b"\0" * 8, "|O", [1]), bad, "not allowed"),
        Hostile("array with a negative dimension", _typed(b"", "<i4", [-1, 0]), bad, "bad array"),
        Hostile("array with a float dimension", _typed(b"\0" * 4, "<i4", [1.5]), bad, "bad array"),
        Hostile("array with a huge dimension", _typed(b"\0" * 4, "<i4", [1e300]), bad, "bad array"),
        Hostile("array dtype that is not a string", _typed(b"\0" * 8, None, [1]), bad, "bad array"),
        Hostile("array dtype of zero size", _typed(b"", "V0", [5]), bad, "bad array"),
        Hostile("array dtype that does not exist", _typed(b"\0" * 4, "<q7", [1]), bad, "bad array"),
        Hostile(
            "array that is not base64", _typed(b"", "<i4", [1]).replace('""', '"!!!!"', 1), bad, "bad array"
        ),
    ]
    return cases


# -- upload faults --------------------------------------------------------------------------

FAULT_COUNTERS = (
    "entry_failures",
    "throttled",
    "errors",
    "dropped_before",
    "dropped_after",
    "bad_md5",
    "slowed",
)


def upload_faults_scenario(
    server: Any, n: int, faults: Any, *, label: str, engines: Sequence[str] = ("boto3", "fast")
) -> tuple[Figures, dict[str, int]]:
    """Each engine inserts its own ``n`` tasks into one stand-in queue at the same time, under ``faults``.

    Returns the figures (repeats = extra stored copies) and the faults injected by kind.
    """
    from tests.sample_tasks import PrintTask
    from tq_orchestrate import RetryPolicy, TaskQueue

    name = f"upload-{os.getpid()}-{random.randrange(10**9)}"
    url = server.create_queue(name)
    retry = RetryPolicy(attempts=15, initial_seconds=0.005, max_seconds=0.1)
    queues = {e: TaskQueue(url, engine=e, progress=False, retry=retry) for e in engines}
    work = {e: [PrintTask(f"{e}-{i}") for i in range(n)] for e in engines}
    expected = Counter(queues[e].encode(t) for e in engines for t in work[e])
    before = server.stats
    server.faults = faults
    results: dict[str, Any] = {}

    def upload(engine: str) -> None:
        try:
            results[engine] = queues[engine].insert_all(iter(work[engine]))
        except BaseException as e:  # reported below
            results[engine] = e

    start = time.monotonic()
    threads = [threading.Thread(target=upload, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    finally:
        server.faults = type(faults)()  # the next scenario on this server starts without faults
    seconds = time.monotonic() - start
    after = server.stats
    for q in queues.values():
        q.close()
    assert results == {e: n for e in engines}, f"{label}: {results}"
    stored = Counter(server.bodies(name))
    injected = {k: getattr(after, k) - getattr(before, k) for k in FAULT_COUNTERS}
    missing = expected - stored
    strangers = set(stored) - set(expected)
    assert not strangers, f"{label}: bodies that were never sent are stored"
    figures = Figures(
        label,
        faults=sum(v for k, v in injected.items() if k != "slowed"),
        inserted=sum(expected.values()),
        completed=len(set(stored) & set(expected)),
        lost=sum(missing.values()),
        repeats=sum(stored.values()) - sum(expected.values()) + sum(missing.values()),
        seconds=seconds,
    )
    figures.notes.append(", ".join(f"{k}={v}" for k, v in injected.items() if v))
    return figures, injected


def hostile_direct(canary: Path) -> Figures:
    """Decode every hostile body with ``totask``; each must meet its error and run nothing."""
    from tq_orchestrate import totask

    cases = hostile_cases(str(canary))
    refused = 0
    for case in cases:
        try:
            totask(case.body)
        except case.errors as e:
            refused += case.phrase in str(e)
    assert not canary.exists() and CANARY_MODULE not in sys.modules, "a hostile payload ran something"
    return Figures("hostile input, decoded", hostile_tried=len(cases), hostile_refused=refused)


def _insert_raw(path: Path, body: bytes, as_text: bool) -> None:
    conn = sqlite3.connect(path)
    try:
        value = "CAST(? AS TEXT)" if as_text else "?"
        conn.execute(
            f"INSERT INTO messages (body, visible_at, receive_count, inserted_at) VALUES ({value}, 0, 0, 0)",
            (body,),
        )
        conn.commit()
    finally:
        conn.close()


def hostile_worker_scenario(
    workdir: Path, canary: Path, rounds: int = 1, url: str | None = None
) -> tuple[Figures, Counter[str]]:
    """Good tasks interleaved with every hostile body (``rounds`` times) drained by one worker.

    ``url`` is a queue whose dead letters come after 2 receives (default: an
    embedded queue in ``workdir``); on SQS the bodies it cannot hold (not UTF-8,
    empty) are left out. The worker runs with ``TQO_CANARY`` set. Returns
    the figures (hostile refused = dead-lettered with their exact raw bytes) and
    the worker's outcome counts.
    """
    from tq_orchestrate import TaskQueue
    from tq_orchestrate.cli import EXIT_TASKS_FAILED

    db = workdir / "hostile.db"
    url = url or f"sqlite://{db}?max_receives=2"
    embedded = url.startswith("sqlite://")
    out = workdir / "hostile-done.txt"
    cases = [c for c in hostile_cases(str(canary)) if embedded or _sqs_can_hold(c.body)] * rounds
    good = ids("g", len(cases) + 1)
    start = time.monotonic()
    with TaskQueue(url, progress=False) as tq:
        for i, case in enumerate(cases):
            tq.insert_all(append_tasks(out, good[i : i + 1]))
            if isinstance(case.body, bytes):  # only another program can store these
                _insert_raw(db, case.body, as_text=i % 2 == 0)
            else:
                assert tq.backend.send_batch([case.body]) == []
        tq.insert_all(append_tasks(out, good[-1:]))
        args = ["--retry-delay", "0", "--empty-for", "3", "--num-tasks", "10", "--min-backoff", "0.1"]
        env = {**os.environ, "TQO_CANARY": str(canary)}
        with Workers(url, workdir, [*args, "--log-json"], env) as pool:
            worker = pool.start()
            code = worker.wait(DEADLINE + 10 * rounds)
            assert code == EXIT_TASKS_FAILED, worker.text()[-2000:]  # a burst with dead letters
        seconds = time.monotonic() - start
        if not embedded:  # SQS moves a message on the receive after the last one: one more look
            wait_for(lambda: not tq.receive(10, 0), "the queue to read empty")
        dead = tq.dead_letters(limit=len(cases) + 10)
        counts = tq.counts()
    assert not canary.exists(), f"a hostile payload ran something: {canary.read_text()!r}"
    raw = Counter(d.body.encode("utf-8", "surrogateescape") for d in dead)
    wanted = Counter(c.body if isinstance(c.body, bytes) else c.body.encode() for c in cases)
    completed, lost, repeats = tally(good, CompletionLog(out).refresh())
    where = "embedded" if embedded else "SQS"
    figures = Figures(
        f"hostile input, through a worker ({where})",
        inserted=len(good),
        completed=completed,
        lost=lost,
        repeats=repeats,
        hostile_tried=len(cases),
        hostile_refused=sum((raw & wanted).values()),
        seconds=seconds,
    )
    figures.counted = (counts.pending, counts.dead)
    return figures, Counter(e["outcome"] for e in worker.events())


def _sqs_can_hold(body: str | bytes) -> bool:
    return isinstance(body, str) and body != ""


def full_database_scenario(path: Path, before: int) -> Figures:
    """Insert ``before`` tasks, cap the file (``max_page_count``), insert until it is full."""
    from tq_orchestrate import RetryPolicy, TaskQueue, UploadError
    from tq_orchestrate.backends.sqlite import SQLiteBackend

    tq = TaskQueue(f"sqlite://{path}", progress=False, retry=RetryPolicy(attempts=3, initial_seconds=0.01))
    assert tq.insert_all(Numbered(0, before)) == before
    backend = tq.backend
    assert isinstance(backend, SQLiteBackend)
    with backend._db("soak") as conn:  # white-box: cap this connection's file at 40 more pages
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 40}")
    try:
        tq.insert_all(Numbered(before, 10**8))
    except UploadError as e:
        accepted = before + e.inserted
        assert "database or disk is full" in str(e)
    else:
        raise AssertionError("the capped database never filled up")
    finally:
        tq.close()
    rows = check_prefixes(path, 10**8, 1)
    return Figures("database full (max_page_count)", 1, accepted, rows, accepted - rows)


def upload_outage_scenario(n: int, engine: str, outage_seconds: float = 3.0) -> Figures:
    """``insert_all`` of ``n`` tasks while the SQS stand-in goes away for ``outage_seconds``.

    The stand-in (20 ms per request) stops once 2,000 tasks are stored, refusing
    connections, and starts again on the same port with its queues.
    """
    from tests.sample_tasks import PrintTask
    from tq_orchestrate import TaskQueue
    from tq_orchestrate.testing import SqsStandIn

    server = SqsStandIn(latency_seconds=0.02).start()
    name = f"upload-outage-{engine}"
    try:
        url = server.create_queue(name)
        tq = TaskQueue(url, progress=False, engine=engine)
        finished = threading.Event()
        during: list[bool] = []

        def outage() -> None:
            wait_for(lambda: len(server.bodies(name)) >= 2000, "2,000 stored")
            server.stop()
            during.append(not finished.is_set())
            time.sleep(outage_seconds)
            server.start()

        thread = threading.Thread(target=outage)
        thread.start()
        start = time.monotonic()
        try:
            assert tq.insert_all(PrintTask(f"{engine}-{i}") for i in range(n)) == n
            seconds = time.monotonic() - start
        finally:
            finished.set()
            thread.join(DEADLINE)
            tq.close()
        assert during == [True], "the outage began while the upload was going on"
        stored = Counter(server.bodies(name))
    finally:
        server.stop()
    expected = {tq.encode(PrintTask(f"{engine}-{i}")) for i in range(n)}
    assert not set(stored) - expected, "bodies that were never sent are stored"
    figures = Figures(
        f"upload across a {outage_seconds:g} s SQS outage ({engine})",
        faults=1,
        inserted=n,
        completed=len(set(stored) & expected),
        lost=len(expected - set(stored)),
        repeats=sum(stored.values()) - len(set(stored)),
        seconds=seconds,
    )
    return figures
