"""Workers record identities in the ledger before they delete (issue #14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import _keep_logging  # noqa: F401 - autouse: `tqo work` configures logging
from tq_orchestrate import LedgerError, PrintTask, TaskQueue
from tq_orchestrate.ledger import Identified, LedgerStore, open_ledger
from tq_orchestrate.worker import poll


def _upload(tq: TaskQueue, block: str, n: int) -> None:
    tq.insert_all([Identified(PrintTask(f"t{i}"), block, i) for i in range(n)], progress=False)


@pytest.mark.parametrize("flush_tasks", [1, 100])
def test_a_worker_with_a_ledger_records_every_task_then_deletes(tmp_path: Path, flush_tasks: int) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    with TaskQueue(url) as tq:
        _upload(tq, "b0", 25)
        tq.insert(PrintTask("unstamped"))  # a task without identity runs, and is not recorded
        ledger = open_ledger(url)
        ledger.set_total("b0", 25)
        assert ledger.figures("b0").missing == 25
        ran = poll(tq, burst_seconds=0, num_tasks=4, ledger_url=url, ledger_flush_tasks=flush_tasks)
        assert ran == 26 and tq.is_empty()
        figures = ledger.figures("b0")
        assert figures.complete and figures.summary()["completed"] == 25


def test_without_a_ledger_bodies_and_behaviour_are_unchanged(tmp_path: Path) -> None:
    with TaskQueue(f"sqlite://{tmp_path}/q.db") as tq:
        tq.insert(PrintTask("x"))
        assert "tqoId" not in tq.backend.receive(1, 30)[0].body


class _FailingLedger(LedgerStore):
    url = "broken://"

    def record(self, entries: Any) -> None:
        raise LedgerError("injected fault", retryable=True)

    def set_total(self, block: str, total: int) -> None: ...

    def figures(self, block: str, *, compact: bool = True) -> Any: ...

    def close(self) -> None: ...


def test_a_task_whose_record_fails_is_never_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tq_orchestrate.worker import _loop

    monkeypatch.setattr(_loop, "open_ledger", lambda url: _FailingLedger())
    with TaskQueue(f"sqlite://{tmp_path}/q.db") as tq:
        _upload(tq, "b0", 3)
        poll(tq, burst_seconds=0, num_tasks=3, ledger_url="x://", delete_attempts=2, sleep=lambda s: None)
        counts = tq.counts()
        assert counts.visible + counts.leased == 3  # every task stays queued: it runs again later


def test_tqo_work_and_tqo_status_speak_ledger(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tq_orchestrate.cli import cli

    url = f"sqlite://{tmp_path}/q.db"
    with TaskQueue(url) as tq:
        _upload(tq, "b0", 4)
    open_ledger(url).set_total("b0", 5)
    runner = CliRunner()
    worked = runner.invoke(cli, ["work", url, "--burst", "--ledger-url", url, "--import", "tq_orchestrate"])
    assert worked.exit_code == 0, worked.output
    shown = runner.invoke(cli, ["status", url, "--ledger-url", url, "--block", "b0"])
    assert "ledger b0: total 5 completed 4 dead 0 recorded 4 missing 1 (e.g. b0#4)" in shown.output
    as_json = runner.invoke(cli, ["status", url, "--json", "--ledger-url", url, "--block", "b0"])
    assert '"missing sample": ["b0#4"]' in as_json.output


def test_the_test_only_fault_hooks_are_inert_unless_set(tmp_path: Path, monkeypatch: Any) -> None:
    from tq_orchestrate.ledger import Identity
    from tq_orchestrate.worker import _faults

    for name in ("TQO_FAULT_BEFORE_RECORD", "TQO_FAULT_AFTER_RECORD", "TQO_FAULT_LEDGER_FAIL_WRITES"):
        monkeypatch.delenv(name, raising=False)
    ledger = open_ledger(f"fq://{tmp_path}")
    assert _faults.wrap_ledger(ledger) is ledger
    _faults.before_record(10**6)
    _faults.after_record(10**6)  # no kill: this process is still here
    monkeypatch.setenv("TQO_FAULT_LEDGER_FAIL_WRITES", "1")
    flaky = _faults.wrap_ledger(ledger)
    with pytest.raises(LedgerError, match="injected"):
        flaky.record([(Identity("b0", 0), "done")])
    flaky.record([(Identity("b0", 0), "done")])
    assert len(flaky.figures("b0").done) == 1
