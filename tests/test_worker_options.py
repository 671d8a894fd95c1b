"""The worker's settings are declared once: WorkerOptions, poll() and ``tqo work`` must agree.

The table is ``tq_orchestrate.worker._options``; these tests fail when a setting
is added, renamed or given another default or help in one place only.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tq_orchestrate import TaskQueue
from tq_orchestrate.cli import work
from tq_orchestrate.worker import WorkerOptions, WorkerStats, poll
from tq_orchestrate.worker._options import settings

LIBRARY_ONLY = {"execute_args", "execute_kwargs", "stop_fn", "backoff_exceptions", "before_fn", "after_fn"}
"""Settings a command line cannot express (callables, argument lists)."""

POLL_OWN = {"tq", "verbose", "tally", "handle_sigterm", "sleep", "clock"}
"""poll() parameters that are not settings of the loop."""

WORK_OWN = {"url", "imports", "backend_options", "burst", "create", "log_level", "log_json", "help"}
"""``tqo work`` parameters that are not settings of the loop."""


def test_the_table_has_one_row_per_field_with_its_default_and_help() -> None:
    fields = [f.name for f in dataclasses.fields(WorkerOptions)]
    assert [s.name for s in settings()] == fields
    defaults = WorkerOptions()
    for s in settings():
        assert s.default == getattr(defaults, s.name), s.name
        assert s.help and s.help[0].isupper() and s.help.endswith("."), s.name


def test_the_docstring_of_worker_options_lists_the_table() -> None:
    doc = WorkerOptions.__doc__ or ""
    for s in settings():
        assert f"``{s.name}`` (default ``{s.default!r}``): {s.help}" in doc, s.name


def test_every_scalar_setting_is_on_the_command_line() -> None:
    offline = {s.name for s in settings() if s.flag is None}
    assert offline == LIBRARY_ONLY
    for s in settings():
        if s.flag is not None:
            assert s.type in (bool, int, float, str), s.name


def test_poll_takes_every_setting_with_the_tables_default() -> None:
    params = inspect.signature(poll).parameters
    for s in settings():
        assert s.poll_name in params, f"poll() has no parameter for {s.name}"
        default = params[s.poll_name].default
        if s.name == "execute_kwargs":
            assert default is None  # None means {} (no mutable default)
        else:
            assert default == s.default, s.name
    assert set(params) - {s.poll_name for s in settings()} == POLL_OWN


def test_poll_keeps_python_task_queues_positional_order() -> None:
    upstream = [
        "tq",
        "lease_seconds",
        "verbose",
        "execute_args",
        "execute_kwargs",
        "stop_fn",
        "backoff_exceptions",
        "min_backoff_window",
        "max_backoff_window",
        "before_fn",
        "after_fn",
        "tally",
    ]
    params = inspect.signature(poll).parameters.values()
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == upstream


def _work_params() -> dict[str, click.Parameter]:
    return {p.name: p for p in work.params if p.name is not None}


def test_tqo_work_offers_every_command_line_setting_with_the_tables_default_and_help() -> None:
    params = _work_params()
    for s in settings():
        if s.flag is None:
            assert s.name not in params, s.name
            continue
        p = params.get(s.name)
        assert isinstance(p, click.Option), f"tqo work has no option for {s.name}"
        assert s.option in p.opts, (s.name, p.opts)
        assert p.default == s.default, s.name
        assert p.help == s.help, s.name
    assert set(params) - {s.name for s in settings()} <= WORK_OWN


def _options_of(monkeypatch: pytest.MonkeyPatch, *args: str) -> WorkerOptions:
    seen: list[WorkerOptions] = []

    def fake_run_worker(url: str, options: WorkerOptions, **kwargs: Any) -> WorkerStats:
        seen.append(options)
        return WorkerStats()

    monkeypatch.setattr("tq_orchestrate.worker.run_worker", fake_run_worker)
    monkeypatch.setattr("tq_orchestrate.cli.configure_logging", lambda *a, **k: None)
    result = CliRunner().invoke(work, ["mem://options", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_tqo_work_without_options_runs_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _options_of(monkeypatch) == WorkerOptions()


def test_tqo_work_translates_its_own_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    args = [
        "--burst",
        "--no-heartbeat",
        "--progress-seconds",
        "0",
        "--min-backoff",
        "0.5",
        "--retry-delay",
        "2",
    ]
    expected = WorkerOptions(
        burst_seconds=0.0,
        heartbeat=False,
        progress_seconds=None,
        min_backoff_seconds=0.5,
        retry_delay_seconds=2.0,
    )
    assert _options_of(monkeypatch, *args) == expected
    assert _options_of(monkeypatch, "--burst", "--empty-for", "3").burst_seconds == 3.0
    assert _options_of(monkeypatch, "--delete-attempts", "2", "--no-backoff-jitter").delete_attempts == 2


def test_poll_passes_the_settings_it_does_not_rename() -> None:
    tq = TaskQueue("mem://poll-settings", progress=False)
    assert poll(tq, burst_seconds=0, delete_attempts=3, backoff_jitter=False, heartbeat=False) == 0


def test_python_m_worker_is_tqo_work_under_its_own_name() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tq_orchestrate.worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("Usage: python -m tq_orchestrate.worker [OPTIONS] URL")
    for s in settings():
        if s.flag is not None:
            assert s.option in result.stdout, s.name
    assert result.stderr == ""
