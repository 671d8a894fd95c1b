"""The worker's settings: ONE table that ``WorkerOptions``, ``poll()`` and ``tqo work`` are built from.

Every field of :class:`WorkerOptions` is declared with :func:`setting`: its
default, its help text (the field's documentation, and the help of ``tqo work``),
the name ``poll()`` gives it (python-task-queue's, where upstream has one) and how
the command line offers it (a :class:`Flag`; ``flag=None`` for what only a
library caller can pass: callables, argument lists). :func:`settings` reads the
table back. This module knows nothing of click: ``cli.py`` builds the options
from :func:`settings`, and tests/test_worker_options.py fails when ``poll()`` or
``tqo work`` drift from it. A new setting is one entry here.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._backoff import Backoff
from ..errors import ConfigurationError

__all__ = ["LEASE_SECONDS", "PROGRESS_SECONDS", "Flag", "Setting", "WorkerOptions", "settings"]

LEASE_SECONDS = 300.0
"""Default lease, as python-task-queue's ``poll``."""

PROGRESS_SECONDS = 30.0
"""Default interval of the worker's progress line."""

T = TypeVar("T")


@dataclass(frozen=True)
class Flag:
    """How ``tqo work`` offers a setting; cli.py turns it into a click option.

    ``name`` is the long option ("" means ``--`` and the field name with dashes);
    ``min``/``max`` bound a number (``min_open``: strictly above ``min``);
    ``zero_is_none``: 0 on the command line means None ("never"). A boolean
    setting defaulting to False is a plain flag; one defaulting to True gets
    ``--name/--no-name``.
    """

    name: str = ""
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    metavar: str | None = None
    zero_is_none: bool = False


COMMAND_LINE = Flag()
"""Offered on the command line as ``--field-name``, unbounded."""


@dataclass(frozen=True)
class Setting:
    """One row of the table, as :func:`settings` returns it."""

    name: str
    """The field of :class:`WorkerOptions`."""
    default: Any
    help: str
    poll_name: str
    """The parameter of ``poll()`` (python-task-queue's name where upstream has one)."""
    flag: Flag | None
    """How ``tqo work`` offers it; None: library callers only."""
    type: type
    """The value's type without None (float, int, bool...)."""

    @property
    def option(self) -> str:
        """The long option of ``tqo work`` ("" if not offered there)."""
        if self.flag is None:
            return ""
        return self.flag.name or "--" + self.name.replace("_", "-")


def _meta(help: str, flag: Flag | None, poll: str) -> dict[str, Any]:
    return {"help": help, "flag": flag, "poll": poll}


def setting(default: T, help: str, *, flag: Flag | None = COMMAND_LINE, poll: str = "") -> T:
    """Declare a field of :class:`WorkerOptions` (typed as its default for the type checker)."""
    return field(default=default, metadata=_meta(help, flag, poll))


@dataclass(frozen=True)
class WorkerOptions:
    """Settings of one worker loop (units in the names; None means no limit).

    Each field's help is declared with it; the list below is built from them.
    """

    lease_seconds: float = setting(
        LEASE_SECONDS,
        "How long a received task stays hidden from other workers (s); renewed while it runs.",
        flag=Flag(min=1),
    )
    num_tasks: int = setting(1, "Tasks leased per receive call (1-10).", flag=Flag(min=1, max=10))
    wait_seconds: float = setting(
        0.0, "Long-poll time of each receive call (s; SQS allows up to 20).", flag=Flag(min=0, max=20)
    )
    burst_seconds: float | None = setting(
        None,
        "Exit once the queue stayed empty this long (s; 0: at the first empty receive; --burst alone: 0).",
        flag=Flag("--empty-for", min=0, metavar="SECONDS"),
    )
    max_tasks: int | None = setting(None, "Exit after this many tasks.", flag=Flag(min=1))
    max_seconds: float | None = setting(None, "Exit after running this long (s).", flag=Flag(min=0))
    max_loops: int | None = setting(None, "Exit after this many receive rounds.", flag=Flag(min=1))
    stop_on_error: bool = setting(False, "Stop when a task raises (poll re-raises it; tqo work exits 1).")
    heartbeat: bool = setting(True, "Renew the leases of running tasks.")
    min_backoff_seconds: float = setting(
        1.0,
        "First backoff window (s) when the queue is empty.",
        flag=Flag("--min-backoff", min=0, min_open=True),
        poll="min_backoff_window",
    )
    max_backoff_seconds: float = setting(
        60.0,
        "Largest backoff window (s); the window doubles up to it.",
        flag=Flag("--max-backoff", min=0, min_open=True),
        poll="max_backoff_window",
    )
    backoff_jitter: bool = setting(True, "Sleep a random time within the backoff window, not all of it.")
    retry_delay_seconds: float = setting(
        5.0,
        "A failed task comes back after this (s), doubled per receive.",
        flag=Flag("--retry-delay", min=0),
    )
    max_retry_delay_seconds: float = setting(
        300.0, "The longest delay (s) before a failed task comes back.", flag=Flag("--max-retry-delay", min=0)
    )
    delete_attempts: int = setting(
        8,
        "Rounds of deleting an executed task through transient errors, spaced by the backoff, "
        "before giving up on it (it then runs again after its lease).",
        flag=Flag(min=1),
    )
    ledger_url: str | None = setting(
        None,
        "Completion ledger to record each executed task's identity in before its delete "
        "(sqlite://, fq://, s3://); none: no ledger, as before.",
        flag=Flag(metavar="URL"),
    )
    ledger_flush_tasks: int = setting(
        100,
        "With a ledger: at most one ledger write per this many tasks (or ledger_flush_seconds).",
        flag=Flag(min=1),
    )
    ledger_flush_seconds: float = setting(
        2.0,
        "With a ledger: at most one ledger write per this many seconds (deletes wait for the record).",
        flag=Flag(min=0),
    )
    execute_args: Sequence[Any] = setting((), "Positional arguments of every execute() call.", flag=None)
    execute_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_meta("Keyword arguments of every execute() call.", None, "")
    )
    # RUF009 (a call in a default) below: setting() returns a dataclasses.Field, like field().
    stop_fn: Callable[..., Any] | None = setting(  # noqa: RUF009
        None,
        "Called after every task and empty receive with whichever of executed, tries, "
        "previous_execution_time and elapsed_time it names; a true result stops the loop.",
        flag=None,
    )
    backoff_exceptions: tuple[type[BaseException], ...] = setting(
        (), "Errors of a task (or a receive) that make the loop back off instead of failing it.", flag=None
    )
    before_fn: Callable[[Any], Any] | None = setting(  # noqa: RUF009
        None, "Called with each task before it runs.", flag=None
    )
    after_fn: Callable[[Any], Any] | None = setting(  # noqa: RUF009
        None, "Called with each task once it ran and its delete was settled.", flag=None
    )
    progress_seconds: float | None = setting(
        PROGRESS_SECONDS,
        "Log tasks done, failed and the rate this often (s; None, or 0 on the command line: never).",
        flag=Flag(min=0, zero_is_none=True),
    )

    def __post_init__(self) -> None:
        if not 1 <= self.num_tasks <= 10:
            raise ConfigurationError(f"num_tasks must be between 1 and 10, got {self.num_tasks!r}")
        if not self.lease_seconds > 0:
            raise ConfigurationError(f"lease_seconds must be > 0, got {self.lease_seconds!r}")
        for name in ("wait_seconds", "retry_delay_seconds", "max_retry_delay_seconds"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if isinstance(self.delete_attempts, bool) or not (
            isinstance(self.delete_attempts, int) and self.delete_attempts >= 1
        ):
            raise ConfigurationError(f"delete_attempts must be an integer >= 1, got {self.delete_attempts!r}")
        if self.progress_seconds is not None and not self.progress_seconds > 0:
            raise ConfigurationError(f"progress_seconds must be > 0 or None, got {self.progress_seconds!r}")
        for name in ("burst_seconds", "max_tasks", "max_seconds", "max_loops"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0 or None, got {value!r}")
        for name in ("stop_fn", "before_fn", "after_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, got {value!r}")
        Backoff(self.min_backoff_seconds, self.max_backoff_seconds)  # validates


def _without_none(hint: Any) -> type:
    """``float`` for ``float | None``; the origin of a generic (``dict[str, Any]`` -> dict)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    return typing.cast(type, origin if origin is not None else hint)


@functools.cache
def settings() -> tuple[Setting, ...]:
    """The table: one :class:`Setting` per field of :class:`WorkerOptions`, in order."""
    hints = typing.get_type_hints(WorkerOptions)
    rows = []
    for f in dataclasses.fields(WorkerOptions):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        rows.append(
            Setting(
                name=f.name,
                default=default,
                help=f.metadata["help"],
                poll_name=f.metadata["poll"] or f.name,
                flag=f.metadata["flag"],
                type=_without_none(hints[f.name]),
            )
        )
    return tuple(rows)


def _settings_doc() -> str:
    """One line per setting (name, default, help), appended to WorkerOptions' docstring."""
    lines = [f"    * ``{s.name}`` (default ``{s.default!r}``): {s.help}" for s in settings()]
    return "\n\n    Settings:\n\n" + "\n".join(lines) + "\n"


if WorkerOptions.__doc__ is not None:  # None under python -OO
    WorkerOptions.__doc__ = WorkerOptions.__doc__.rstrip() + _settings_doc()
