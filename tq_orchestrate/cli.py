"""The ``tqo`` command line: work, status, purge, release, rezero, dlq, copy (cp, mv), insert,
sqs-create, demo.

Every command prints errors as one line on stderr and exits non-zero
(1 for a queue error, 2 for a usage error; ``work --burst`` exits
:data:`EXIT_TASKS_FAILED` when tasks failed). Logging is configured here and in
the worker entry point only.

Commands that read or work a queue refuse an embedded queue file that does not
exist (a mistyped path is not a new empty queue); ``insert`` creates it, and
``work --create`` waits for a producer.
"""

from __future__ import annotations

import collections
import functools
import importlib
import inspect
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .errors import ConfigurationError, PayloadError, TaskQueueError, UnsafeTaskError
from .ledger import open_ledger
from .worker._options import Setting, WorkerOptions, settings

if TYPE_CHECKING:
    from ._queue import TaskQueue
    from .backends.base import Counts, Message
    from .worker import WorkerStats

__all__ = ["cli", "main", "work"]

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXIT_TASKS_FAILED = 3
"""``tqo work --burst`` exit status when a task it took failed or was dead-lettered."""
RATE_WINDOW = 10
"""``status --watch`` computes the drain rate over this many readings."""
COPY_CHUNK = 1000
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def friendly_errors(fn: F) -> F:
    """Turn TaskQueueError into click's one-line ``Error: ...`` and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TaskQueueError as e:
            raise click.ClickException(_one_line(e)) from e

    return wrapper  # type: ignore[return-value]


def _open(url: str, **options: Any) -> TaskQueue:
    from ._queue import TaskQueue

    return TaskQueue(url, progress=False, **options)


def existing_only(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus ``create=False`` for an embedded queue (a missing file is an error).

    An explicit ``-o create=true`` wins.
    """
    from .backends import split_scheme

    if split_scheme(url)[0] != "sqlite":
        return options
    return {"create": False, **options}


def _open_existing(url: str, **options: Any) -> TaskQueue:
    return _open(url, **existing_only(url, options))


import_option = click.option(
    "--import",
    "-i",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE for its task definitions and allow its queueable functions (repeatable).",
)


# -- backend options ---------------------------------------------------------------

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def option_value(text: str) -> Any:
    """A ``-o`` value: ``true``/``false`` (any case) a bool, ``12`` an int, ``1.5``/``1e3`` a float.

    Anything else stays text; double quotes around a value keep it text (``"007"``).
    """
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse_backend_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as backend keyword options; ValueError names a bad one."""
    from ._queue import TaskQueue

    reserved = {
        name
        for name, p in inspect.signature(TaskQueue).parameters.items()
        if p.kind is not p.VAR_KEYWORD and name != "url"
    }
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        if key in reserved:
            raise ValueError(f"{key!r} is not a backend option")
        if key in options:
            raise ValueError(f"{key!r} is given twice")
        options[key] = option_value(value)
    return options


def _backend_options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_backend_options(values)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


_OPTION_HELP = (
    "Backend option KEY=VALUE (repeatable; wins over the URL query), e.g. -o max_receives=3 or "
    "-o endpoint_url=http://127.0.0.1:9324. true/false, integers and decimals become bool, int and "
    'float; "quoted" values stay text.'
)


def backend_option(*names: str, dest: str = "backend_options", of: str = "") -> Callable[[F], F]:
    """The ``-o/--option KEY=VALUE`` option (``of`` names the URL it is for, if several)."""
    text = _OPTION_HELP if not of else _OPTION_HELP.replace("Backend option", f"Backend option of {of}")
    return click.option(
        *(names or ("-o", "--option")),
        dest,
        multiple=True,
        metavar="KEY=VALUE",
        callback=_backend_options,
        help=text,
    )


# -- logging --------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record; task records carry id, class, seconds, outcome."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "task_event", None)
        if isinstance(event, dict):
            out.update(event)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, log_json: bool, stream: IO[str] | None = None) -> None:
    """Log to stderr at ``level``; per-task records only with ``log_json`` or DEBUG."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if level != "DEBUG":  # botocore and urllib3 chatter only when debugging
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    per_task = log_json or level == "DEBUG"
    logging.getLogger("tq_orchestrate.worker.tasks").setLevel(logging.INFO if per_task else logging.WARNING)


# -- the group ------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
@click.version_option(package_name="tq-orchestrate", prog_name="tqo")
def cli() -> None:
    """Manage task queues and run workers.

    Queue URLs: sqlite:///path/q.db (embedded, the default for a bare path),
    fq://dir, mem://name, sqs://name or an SQS https:// URL.

    \b
    Example:
      tqo insert sqlite:///tmp/q.db tasks.jsonl --import mytasks
      tqo work sqlite:///tmp/q.db --import mytasks --burst
      tqo status sqlite:///tmp/q.db
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``tqo``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="tqo")


# -- work -----------------------------------------------------------------------


def _setting_type(s: Setting) -> Any:
    """The click type of a setting: its Python type, bounded as its :class:`Flag` says."""
    f = s.flag
    if f is None or s.type is bool or (f.min is None and f.max is None):
        return s.type
    if s.type is int:
        return click.IntRange(None if f.min is None else int(f.min), None if f.max is None else int(f.max))
    return click.FloatRange(f.min, f.max, min_open=f.min_open)


def _zero_is_none(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return None if value == 0 else value


def _setting_option(s: Setting) -> Callable[[F], F]:
    """The ``tqo work`` option of one setting: its flag, default and help from the table."""
    assert s.flag is not None
    if s.type is bool:
        if s.default:
            on_off = f"{s.option}/--no-{s.option[2:]}"
            return click.option(on_off, s.name, default=True, show_default=True, help=s.help)
        return click.option(s.option, s.name, is_flag=True, default=False, help=s.help)
    return click.option(
        s.option,
        s.name,
        type=_setting_type(s),
        default=s.default,
        show_default=s.default is not None,
        metavar=s.flag.metavar,
        callback=_zero_is_none if s.flag.zero_is_none else None,
        help=s.help,
    )


def worker_setting_options(fn: F) -> F:
    """Add one option per worker setting the command line offers, in the table's order."""
    for s in reversed(settings()):
        if s.flag is not None:
            fn = _setting_option(s)(fn)
    return fn


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@import_option
@backend_option()
@worker_setting_options
@click.option("--burst", is_flag=True, help="Exit once the queue is empty (--empty-for 0 unless given).")
@click.option(
    "--create",
    is_flag=True,
    help="Create a missing embedded queue file and wait for tasks (default: a missing file is an error).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO")
@click.option("--log-json", is_flag=True, help="Log JSON lines, one per task (id, class, seconds, outcome).")
def work(
    url: str,
    imports: tuple[str, ...],
    backend_options: dict[str, Any],
    burst: bool,
    create: bool,
    log_level: str,
    log_json: bool,
    **values: Any,
) -> None:
    """Execute tasks from URL until stopped.

    SIGTERM or Ctrl-C finishes the task in hand, releases leased tasks that
    did not start and exits 0; a second signal exits at once (130 for SIGINT,
    143 for SIGTERM). Same as `python -m tq_orchestrate.worker URL`.

    With --burst the exit status is 0 only if every task taken succeeded;
    otherwise 3, after a line saying how many failed or were dead-lettered.

    Transient queue errors (an SQS outage) are logged and waited out; an error
    no retry cures (the queue was deleted, access denied) exits 1.

    \b
    Example:
      tqo work sqlite:///tmp/q.db --import mytasks --num-tasks 10 --burst --log-json
      tqo work sqs://my-queue -o endpoint_url=http://127.0.0.1:9324 -o region=us-east-1
    """
    from .worker import run_worker

    configure_logging(log_level.upper(), log_json)
    if burst and values["burst_seconds"] is None:
        values["burst_seconds"] = 0.0
    burst_seconds = values["burst_seconds"]
    try:
        options = WorkerOptions(**values)
        opened = backend_options if create else existing_only(url, backend_options)
        stats = run_worker(url, options, imports=imports, backend_options=opened)
    except TaskQueueError as e:
        raise click.ClickException(_one_line(e)) from e
    except KeyboardInterrupt:
        sys.exit(130)
    _exit_for(stats, burst=burst_seconds is not None)


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _exit_for(stats: WorkerStats, *, burst: bool) -> None:
    if stats.error is not None:
        click.echo(f"Error: {stats.stop_reason}: {_one_line(stats.error)}", err=True)
        sys.exit(1)
    if burst and (stats.failed or stats.corrupt):
        click.echo(
            f"Error: {_many(stats.failed, 'task run')} failed and {_many(stats.corrupt, 'corrupt message')} "
            f"dead-lettered; {_many(stats.executed, 'task')} succeeded",
            err=True,
        )
        sys.exit(EXIT_TASKS_FAILED)


# -- status / purge / release ---------------------------------------------------------


def _counts_dict(tq: TaskQueue) -> dict[str, Any]:
    c = tq.counts()
    return {
        "url": tq.url,
        "enqueued": c.pending,
        "visible": c.visible,
        "leased": c.leased,
        "delayed": c.delayed,
        "inserted": c.inserted,
        "completed": c.completed,
        "dead": c.dead,
        "exact": c.exact,
    }


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Print the counts every SECONDS with the drain rate and an ETA, until Ctrl-C.",
)
@click.option(
    "--readings",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after this many lines.",
)
@click.option("--ledger-url", default=None, metavar="URL", help="Completion ledger to read (with --block).")
@click.option(
    "--block",
    "blocks",
    multiple=True,
    metavar="KEY",
    help="Show the ledger's figures for this block (repeatable).",
)
@backend_option()
@friendly_errors
def status(
    url: str,
    as_json: bool,
    watch: float | None,
    readings: int | None,
    ledger_url: str | None,
    blocks: tuple[str, ...],
    backend_options: dict[str, Any],
) -> None:
    """Show how many tasks are enqueued, leased, delayed, completed and dead.

    `-` marks a figure the backend does not know; SQS figures are approximate.
    --watch reprints one line every SECONDS: the drain rate (completions per
    second, or the fall of the enqueued count where completions are not
    counted) over the last 10 readings, and the time left at that rate.

    \b
    Example:
      tqo status sqlite:///tmp/q.db --json
      tqo status sqs://my-queue --watch 30
    """
    if watch is not None and as_json:
        raise click.UsageError("--json and --watch cannot be combined")
    if readings is not None and watch is None:
        raise click.UsageError("--readings needs --watch")
    if bool(blocks) != bool(ledger_url):
        raise click.UsageError("--ledger-url and --block go together")
    if watch is not None:
        with _open_existing(url, **backend_options) as tq:
            watch_status(tq, watch, readings)
        return
    with _open_existing(url, **backend_options) as tq:
        data = _counts_dict(tq)
    if ledger_url:
        data["ledger"] = ledger_figures(ledger_url, blocks)
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"queue      {data['url']}" + ("" if data["exact"] else "  (approximate counts)"))
    for key in ("enqueued", "visible", "leased", "delayed", "inserted", "completed", "dead"):
        value = data[key]
        click.echo(f"{key:<10} {'-' if value is None else value}")
    for block, figures in data.get("ledger", {}).items():
        shown = " ".join(
            f"{k} {'-' if v is None else v}" for k, v in figures.items() if k != "missing sample"
        )
        sample = ", ".join(figures["missing sample"])
        click.echo(f"ledger {block}: {shown}" + (f" (e.g. {sample})" if sample else ""))


def ledger_figures(ledger_url: str, blocks: Sequence[str], sample: int = 5) -> dict[str, Any]:
    """The ledger's figures per block (read only: nothing is compacted), for ``tqo status``."""
    with open_ledger(ledger_url) as ledger:
        out: dict[str, Any] = {}
        for block in blocks:
            figures = ledger.figures(block, compact=False)
            out[block] = {**figures.summary(), "missing sample": figures.missing_sample(sample)}
        return out


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@backend_option()
@friendly_errors
def purge(url: str, yes: bool, backend_options: dict[str, Any]) -> None:
    """Delete every task in URL, leased or not.

    \b
    Example:
      tqo purge sqlite:///tmp/q.db --yes
    """
    if not yes:
        click.confirm(f"Delete every task in {url}?", abort=True, err=True)
    with _open_existing(url, **backend_options) as tq:
        tq.purge()
    click.echo(f"purged {url}")


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@backend_option()
@friendly_errors
def release(url: str, backend_options: dict[str, Any]) -> None:
    """Make every leased task in URL visible again now.

    Use it after workers died, instead of waiting for their leases to expire.

    \b
    Example:
      tqo release sqlite:///tmp/q.db
    """
    with _open_existing(url, **backend_options) as tq:
        count = tq.release_all()
    click.echo(f"released {count} tasks")


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@backend_option()
@friendly_errors
def rezero(url: str, backend_options: dict[str, Any]) -> None:
    """Set the inserted and completed totals of URL to zero (its tasks stay).

    \b
    Example:
      tqo rezero sqlite:///tmp/q.db
    """
    with _open_existing(url, **backend_options) as tq:
        tq.rezero()
    click.echo(f"rezeroed {url}")


def drained(c: Counts) -> int:
    """A number that grows by one per task drained: completions, or minus the backlog."""
    return c.completed if c.completed is not None else -c.pending


def drain_rate(readings: Sequence[tuple[float, int]]) -> float | None:
    """Tasks drained per second between the first and last ``(seconds, drained)`` reading."""
    if len(readings) < 2:
        return None
    (t0, d0), (t1, d1) = readings[0], readings[-1]
    return (d1 - d0) / (t1 - t0) if t1 > t0 else None


def eta_text(pending: int, rate: float | None) -> str:
    """``H:MM:SS`` to drain ``pending`` tasks at ``rate``; ``-`` when unknown or not draining."""
    if pending == 0:
        return "0:00:00"
    if rate is None or rate <= 0:
        return "-"
    seconds = round(pending / rate)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status_line(c: Counts, rate: float | None) -> str:
    """One ``status --watch`` line."""
    shown = "-" if rate is None else f"{rate:.2f}"
    completed = "-" if c.completed is None else c.completed
    approx = "" if c.exact else " (approximate)"
    return (
        f"{time.strftime('%H:%M:%S')} enqueued {c.pending} leased {c.leased} completed {completed} "
        f"rate {shown} tasks/s ETA {eta_text(c.pending, rate)}{approx}"
    )


def watch_status(
    tq: TaskQueue, interval_seconds: float, readings: int | None, clock: Callable[[], float] = time.monotonic
) -> None:
    """Print :func:`status_line` every ``interval_seconds`` (``readings`` lines, or until Ctrl-C)."""
    window: collections.deque[tuple[float, int]] = collections.deque(maxlen=RATE_WINDOW)
    shown = 0
    try:
        while readings is None or shown < readings:
            if shown:
                time.sleep(interval_seconds)
            c = tq.counts()
            window.append((clock(), drained(c)))
            click.echo(status_line(c, drain_rate(window)))
            shown += 1
    except KeyboardInterrupt:
        return


# -- dead letters ---------------------------------------------------------------


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--redrive", is_flag=True, help="Put every dead-lettered task back in the queue.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
@backend_option()
@friendly_errors
def dlq(url: str, limit: int, redrive: bool, as_json: bool, backend_options: dict[str, Any]) -> None:
    """List the dead-lettered tasks of URL (class, receive count, error), or redrive them.

    \b
    Example:
      tqo dlq sqlite:///tmp/q.db
      tqo dlq sqlite:///tmp/q.db --redrive
    """
    with _open_existing(url, **backend_options) as tq:
        if redrive:
            click.echo(f"redrove {tq.redrive()} tasks")
            return
        letters = tq.dead_letters(limit=limit)
    from .worker import body_task_name

    for d in letters:
        name = body_task_name(d.body)
        if as_json:
            row = {"id": d.message_id, "class": name, "receive_count": d.receive_count}
            click.echo(json.dumps({**row, "error": d.error, "body": d.body}))
        else:
            error = " ".join((d.error or "-").split())
            click.echo(f"{d.message_id}\t{name}\treceives={d.receive_count}\t{error}")
    if not as_json:
        click.echo(
            f"{len(letters)} dead-lettered tasks" + (" (limit reached)" if len(letters) >= limit else "")
        )


# -- copy -----------------------------------------------------------------------


def _drain_source(src: TaskQueue, lease_seconds: float) -> Iterator[list[Message]]:
    """Lease SRC's visible messages in batches until none is left or one repeats."""
    seen: set[str] = set()
    while True:
        fresh = []
        for m in src.receive(10, lease_seconds, 1.0):
            if m.message_id in seen:  # its lease ran out and it came back: hand it back
                src.release(m.handle)
            else:
                fresh.append(m)
        if not fresh:
            return
        seen.update(m.message_id for m in fresh)
        yield fresh


def copy_queue(src: TaskQueue, dst: TaskQueue, *, move: bool, lease_seconds: float) -> tuple[int, int]:
    """Copy (or move) every visible task of ``src`` to ``dst``; return (copied, skipped).

    Messages that are not valid tasks are skipped and stay in ``src``.
    Copied messages are released in ``src`` at the end (deleted with ``move``).
    """
    held: list[str] = []
    copied = skipped = 0
    tasks: list[Any] = []
    handles: list[str] = []

    def flush() -> None:
        nonlocal copied
        if tasks:
            copied += dst.insert(list(tasks))
            (src.delete(list(handles)) if move else held.extend(handles))
            tasks.clear()
            handles.clear()

    try:
        for batch in _drain_source(src, lease_seconds):
            for m in batch:
                try:
                    tasks.append(src.decode(m))
                    handles.append(m.handle)
                except PayloadError as e:
                    skipped += 1
                    held.append(m.handle)
                    click.echo(f"skipped message {m.message_id}: {_one_line(e)}", err=True)
            if len(tasks) >= COPY_CHUNK:
                flush()
        flush()
    finally:
        for h in held + handles:
            try:
                src.release(h)
            except TaskQueueError as e:
                click.echo(f"could not release {h}: {_one_line(e)}", err=True)
    return copied, skipped


def copy_options(fn: F) -> F:
    """SRC, DST and the options ``copy``, ``cp`` and ``mv`` share."""
    for decorator in reversed(
        [
            click.argument("src"),
            click.argument("dst"),
            click.option(
                "--import",
                "-i",
                "--load",
                "imports",
                multiple=True,
                metavar="MODULE",
                help=(
                    "Import MODULE for its task definitions and allow its queueable functions "
                    "(repeatable; --load as in ptq cp)."
                ),
            ),
            click.option(
                "--lease-seconds",
                type=click.FloatRange(min=1),
                default=3600.0,
                show_default=True,
                help="How long SRC's tasks stay leased while being copied.",
            ),
            backend_option("--src-option", dest="src_options", of="SRC"),
            backend_option("--dst-option", dest="dst_options", of="DST"),
        ]
    ):
        fn = decorator(fn)
    return fn


def _copy(
    src: str,
    dst: str,
    imports: tuple[str, ...],
    move: bool,
    lease_seconds: float,
    src_options: dict[str, Any],
    dst_options: dict[str, Any],
) -> None:
    from .worker import import_task_modules

    import_task_modules(imports)
    with _open_existing(src, **src_options) as s, _open(dst, **dst_options) as d:
        copied, skipped = copy_queue(s, d, move=move, lease_seconds=lease_seconds)
    verb = "moved" if move else "copied"
    click.echo(f"{verb} {copied} tasks from {src} to {dst}" + (f"; skipped {skipped}" if skipped else ""))


@cli.command(context_settings=_CONTEXT)
@copy_options
@click.option("--move", is_flag=True, help="Delete each task from SRC once it is in DST (as tqo mv).")
@friendly_errors
def copy(
    src: str,
    dst: str,
    imports: tuple[str, ...],
    move: bool,
    lease_seconds: float,
    src_options: dict[str, Any],
    dst_options: dict[str, Any],
) -> None:
    """Copy the visible tasks of SRC into DST (SRC keeps them unless --move).

    Run it while no worker drains SRC. Messages that are not valid tasks are
    reported and left in SRC. `tqo cp` is the same command (ptq's name;
    --load is --import).

    \b
    Example:
      tqo copy sqlite:///tmp/q.db sqs://my-queue --import mytasks
      tqo cp fq:///tmp/old sqlite:///tmp/q.db --load mytasks
    """
    _copy(src, dst, imports, move, lease_seconds, src_options, dst_options)


cli.add_command(copy, "cp")


@cli.command(context_settings=_CONTEXT)
@copy_options
@friendly_errors
def mv(
    src: str,
    dst: str,
    imports: tuple[str, ...],
    lease_seconds: float,
    src_options: dict[str, Any],
    dst_options: dict[str, Any],
) -> None:
    """Move the visible tasks of SRC into DST: ptq's mv, the same as tqo copy --move.

    Each task is deleted from SRC once it is in DST. Run it while no worker
    drains SRC.

    \b
    Example:
      tqo mv sqlite:///tmp/q.db sqs://my-queue --import mytasks
    """
    _copy(src, dst, imports, True, lease_seconds, src_options, dst_options)


# -- insert ---------------------------------------------------------------------


def _hint(error: BaseException) -> str:
    """How to fix an unknown task class or function, unless the error says it already."""
    if isinstance(error, UnsafeTaskError) and "--import" not in str(error):
        return " (pass --import MODULE, the module defining it)"
    return ""


def validate_lines(lines: Iterable[str]) -> list[str]:
    """Payload lines (blank lines dropped) after checking that each one is a task.

    A bad line raises ConfigurationError naming its line number.
    """
    from ._task import totask

    kept: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            totask(text)
        except PayloadError as e:
            raise ConfigurationError(f"line {number}: {_one_line(e)}{_hint(e)}; nothing was inserted") from e
        kept.append(text)
    return kept


@cli.command(context_settings=_CONTEXT)
@click.argument("url")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@import_option
@click.option("--delay-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True)
@backend_option()
@friendly_errors
def insert(
    url: str, source: IO[str], imports: tuple[str, ...], delay_seconds: float, backend_options: dict[str, Any]
) -> None:
    """Insert tasks from payload lines in SOURCE (a file, or - for stdin).

    Each line is one JSON payload, as a task's payload() gives it (or
    python-task-queue's {"payload": ..., "queueName": ...} envelope). Every line
    is checked first; if one is bad, nothing is inserted.

    \b
    Example:
      tqo insert sqlite:///tmp/q.db tasks.jsonl --import mytasks
      printf '{"class": "PrintTask", "txt": "hi"}\\n' | tqo insert q.db --import mytasks
    """
    from ._task import totask
    from .worker import import_task_modules

    import_task_modules(imports)
    lines = validate_lines(source)
    with _open(url, **backend_options) as tq:
        count = tq.insert((totask(line) for line in lines), delay_seconds=delay_seconds, total=len(lines))
    click.echo(f"inserted {count} tasks into {url}")


# -- SQS queue pair ---------------------------------------------------------------


@cli.command("sqs-create", context_settings=_CONTEXT)
@click.argument("name")
@click.option(
    "--max-receives",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Receives before a task moves to NAME-dlq.",
)
@click.option("--region", default=None, help="AWS region (default: the AWS configuration chain).")
@click.option("--endpoint-url", default=None, help="An SQS-compatible endpoint, e.g. a local emulator.")
@click.option("--profile", default=None, help="AWS profile name.")
@friendly_errors
def sqs_create(
    name: str, max_receives: int, region: str | None, endpoint_url: str | None, profile: str | None
) -> None:
    """Create the SQS queue NAME and NAME-dlq with a redrive policy (safe to repeat).

    \b
    Example:
      tqo sqs-create my-queue --max-receives 5 --region us-east-1
    """
    from .backends.sqs import ensure_queue_pair

    loopback = endpoint_url is not None and _is_loopback(endpoint_url)
    queue_url, dlq_url = ensure_queue_pair(
        name,
        max_receives,
        region=region,
        endpoint_url=endpoint_url,
        profile=profile,
        allow_insecure_http=loopback,
    )
    click.echo(f"queue {queue_url}")
    click.echo(f"dead-letter queue {dlq_url} (after {max_receives} receives)")


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


# -- demo -----------------------------------------------------------------------

DEMO_MODULE = "tq_orchestrate.orchestration.demo"


@cli.command(context_settings={**_CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@friendly_errors
def demo(args: tuple[str, ...]) -> None:
    """Run the example pipeline (needs the dagster extra).

    ARGS go to the demo itself; put them after `--` to pass its own --help.

    \b
    Example:
      tqo demo
      tqo demo -- --help
    """
    main_fn = _load_demo()
    takes_args = bool(inspect.signature(main_fn).parameters)
    result = main_fn(list(args)) if takes_args else main_fn()
    if isinstance(result, int) and result:
        sys.exit(result)


def _load_demo() -> Callable[..., Any]:
    try:
        module = importlib.import_module(DEMO_MODULE)
    except ModuleNotFoundError as e:
        if e.name is not None and DEMO_MODULE.startswith(e.name):
            raise ConfigurationError(f"the demo is not available: module {DEMO_MODULE} is missing") from e
        raise ConfigurationError(
            f"the demo needs {e.name!r}; install the extra: pip install 'tq-orchestrate[dagster]'"
        ) from e
    fn = getattr(module, "main", None)
    if not callable(fn):
        raise ConfigurationError(f"{DEMO_MODULE} has no main() function")
    return fn  # type: ignore[no-any-return]
