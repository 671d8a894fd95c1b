"""The heartbeat on its own: due renewals, the total cap, lost leases, errors, discard.

Moved from test_worker.py; the heartbeat inside a running worker is tested there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from tests.worker_fakes import FakeTime
from tq_orchestrate._heartbeat import Heartbeat
from tq_orchestrate.errors import BackendError, LeaseLostError, QueueNotFoundError


class Renewals:
    def __init__(self, fail: Callable[[str, int], BaseException | None] | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fail = fail

    def __call__(self, handle: str, seconds: float) -> None:
        self.calls.append((handle, seconds))
        error = self.fail(handle, len(self.calls)) if self.fail else None
        if error is not None:
            raise error


def test_heartbeat_renews_due_leases_up_to_the_total_cap() -> None:
    fake = FakeTime()
    renew = Renewals()
    lost: list[tuple[str, str]] = []
    hb = Heartbeat(
        renew, 30, max_total_seconds=100, clock=fake.clock, on_lost=lambda h, r: lost.append((h, r))
    )
    hb.add(["a"])
    hb.beat()
    assert renew.calls == []  # not due yet
    fake.now += 10
    hb.beat()
    assert renew.calls == [("a", 30)]
    fake.now += 5
    hb.beat()
    assert len(renew.calls) == 1  # renewed 5 s ago: not due
    fake.now += 70  # 85 s after receipt: only 15 s left under the cap
    hb.beat()
    assert renew.calls[-1][0] == "a" and renew.calls[-1][1] == pytest.approx(15)
    fake.now += 15
    hb.beat()
    assert [h for h, _ in lost] == ["a"] and "maximum" in lost[0][1]
    assert hb.lost("a") and hb.tracked() == []


def test_heartbeat_reports_a_lost_lease_and_retries_a_transient_error() -> None:
    fake = FakeTime()

    def fail(handle: str, n: int) -> BaseException | None:
        if handle == "gone":
            return LeaseLostError("lease expired")
        return BackendError("timeout", retryable=True) if n <= 2 else None

    renew = Renewals(fail)
    lost: list[str] = []
    hb = Heartbeat(renew, 3, clock=fake.clock, on_lost=lambda h, r: lost.append(h))
    hb.add(["gone", "flaky"])
    fake.now += 1
    hb.beat()
    assert lost == ["gone"] and hb.lost("gone")
    assert hb.tracked() == ["flaky"] and not hb.lost("flaky")
    fake.now += 1
    hb.beat()
    assert hb.renewals == 1  # the transient error was retried on the next beat
    hb.discard("flaky")
    assert hb.tracked() == []


def test_heartbeat_renews_a_lease_shorter_than_a_second() -> None:
    fake = FakeTime()
    renew = Renewals()
    lost: list[str] = []
    hb = Heartbeat(renew, 0.3, clock=fake.clock, on_lost=lambda h, r: lost.append(r))
    hb.add(["a"])
    fake.now += 0.1
    hb.beat()
    assert [h for h, _ in renew.calls] == ["a"] and renew.calls[0][1] == pytest.approx(0.3)
    assert lost == []


def test_heartbeat_survives_any_renewal_error_and_reports_fatal_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    errors: dict[str, BaseException] = {
        "reset": ConnectionResetError("connection reset by peer"),
        "bug": RuntimeError("unexpected"),
        "gone": QueueNotFoundError("q", "deleted"),
    }
    renew = Renewals(lambda handle, n: errors.get(handle))
    lost: list[tuple[str, str]] = []
    fatal: list[BaseException] = []
    hb = Heartbeat(
        renew, 3, clock=fake.clock, on_lost=lambda h, r: lost.append((h, r)), on_fatal=fatal.append
    )
    hb.add(["reset", "bug", "gone", "fine"])
    fake.now += 1
    with caplog.at_level(logging.WARNING, logger="tq_orchestrate.worker"):
        hb.beat()
    assert sorted(h for h, _ in lost) == ["bug", "gone"]
    assert dict(lost)["bug"] == "RuntimeError: unexpected"
    assert fatal == [errors["gone"]]
    assert sorted(hb.tracked()) == ["fine", "reset"] and hb.renewals == 1
    assert any(
        "could not renew 1 of 4 leases (ConnectionResetError" in r.getMessage() for r in caplog.records
    )
    fake.now += 1
    hb.beat()  # still failing: retried, but not warned about again so soon
    assert sum("could not renew" in r.getMessage() for r in caplog.records) == 1
    del errors["reset"]  # the connection is back
    fake.now += 1
    with caplog.at_level(logging.INFO, logger="tq_orchestrate.worker"):
        hb.beat()
    assert hb.renewals == 4 and sorted(hb.tracked()) == ["fine", "reset"]
    assert caplog.records[-1].getMessage() == "leases are renewed again"


def test_heartbeat_discard_waits_for_a_renewal_under_way() -> None:
    fake = FakeTime()
    started, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def renew(handle: str, seconds: float) -> None:
        started.set()
        finish.wait(30)
        order.append("renewed")

    hb = Heartbeat(renew, 3, clock=fake.clock)
    hb.add(["a"])
    fake.now += 1
    beat = threading.Thread(target=hb.beat)
    beat.start()
    assert started.wait(30)

    def discard() -> None:
        hb.discard("a")
        order.append("discarded")

    t = threading.Thread(target=discard)
    t.start()
    t.join(0.2)
    assert t.is_alive() and order == []  # still waiting: a release now could be undone by the renewal
    finish.set()
    t.join(30)
    beat.join(30)
    assert order == ["renewed", "discarded"] and hb.tracked() == []
