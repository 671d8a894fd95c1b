"""The chain sensor with a completion ledger: exact, immediate, and a visible fallback (issue #14)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tq_orchestrate import TaskQueue
from tq_orchestrate.ledger import open_ledger
from tq_orchestrate.ledger.base import DONE
from tq_orchestrate.ledger.identity import Identity
from tq_orchestrate.orchestration.jobs import RESOURCE_KEY
from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.worker import poll

from .conftest import OWNERS_BETA
from .test_chain import Chain, check_history, drained, make_chain

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)


def ledger_chain(tmp_path: Path) -> Chain:
    """A chain whose drain lag is SQS's (60 s): only the ledger can finish a block within a test."""
    chain = make_chain(tmp_path)
    resource = TaskQueueResource(queue_url=chain.url, drain_lag_seconds=60, ledger_url=chain.url)
    defs = dg.Definitions(
        assets=chain.blocks.assets(),
        asset_checks=list(chain.blocks.checks),
        jobs=[chain.blocks.job],
        sensors=[chain.sensor],
        resources={RESOURCE_KEY: resource},
    )
    return dataclasses.replace(chain, defs=defs)


def work(chain: Chain, ledger: bool = True, max_tasks: int | None = None) -> int:
    with TaskQueue(chain.url, progress=False) as q:
        url = chain.url if ledger else None
        return poll(q, burst_seconds=0, ledger_url=url, max_tasks=max_tasks, handle_sigterm=False)


@pytest.fixture
def instance() -> Any:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def test_with_a_ledger_each_block_is_done_when_its_last_task_is_recorded(
    tmp_path: Path, instance: Any
) -> None:
    chain = ledger_chain(tmp_path)
    data = chain.tick(instance)
    for key in ("b0", "b1", "b2"):
        [request] = data.run_requests
        assert request.partition_key == key
        assert chain.upload(instance, key, request.tags).success
        work(chain, max_tasks=2)
        stalled = chain.tick(instance)
        assert stalled.run_requests == []
        assert f"ledger: 2 of 3 tasks recorded, 1 missing (e.g. {key}#2)" in stalled.skip_message
        work(chain)
        data = chain.tick(instance)  # no 60 s lag: the ledger is exact
    assert "series" in data.skip_message and "complete" in data.skip_message
    records = drained(instance, chain)
    meta = records[0].asset_materialization.metadata
    assert meta["ledger"].value == "exact" and meta["completed (ledger)"].value == 3
    assert meta["inserted"].value == 3 and meta["missing"].value == 0
    assert all(r.status.value == "SUCCEEDED" for r in check_history(instance, chain, "drained"))
    assert open_ledger(chain.url).figures("b1").summary()["recorded"] == 3


def test_workers_without_a_ledger_fall_back_to_counts_with_a_warning(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)  # exact counts, short lag: the fallback proves emptiness quickly
    resource = TaskQueueResource(queue_url=chain.url, drain_lag_seconds=0.05, ledger_url=chain.url)
    chain = dataclasses.replace(
        chain,
        defs=dg.Definitions(
            assets=chain.blocks.assets(),
            asset_checks=list(chain.blocks.checks),
            jobs=[chain.blocks.job],
            sensors=[chain.sensor],
            resources={RESOURCE_KEY: resource},
        ),
    )
    [request] = chain.tick(instance).run_requests
    assert chain.upload(instance, "b0", request.tags).success
    work(chain, ledger=False)  # e.g. upstream python-task-queue workers
    data = chain.tick(instance)
    assert [r.partition_key for r in data.run_requests] == ["b1"]
    meta = drained(instance, chain)[0].asset_materialization.metadata
    assert meta["ledger"].value == "fallback" and meta["missing"].value == 3
    assert meta["verdict"].value.startswith("WARNING: drained by counts but the ledger has only 0 of 3")
    [check] = check_history(instance, chain, "drained")
    assert check.status.value == "FAILED"  # a WARN-severity failure: visible, not blocking


def test_a_dead_lettered_task_is_recorded_dead_and_the_block_fails_not_sticks(
    tmp_path: Path, instance: Any
) -> None:
    chain = ledger_chain(tmp_path)
    [request] = chain.tick(instance).run_requests
    assert chain.upload(instance, "b0", request.tags).success
    with TaskQueue(chain.url, progress=False) as q:
        [message] = q.receive(1, 30)
        q.backend.dead_letter(message.handle, "ValueError: tile is corrupt")
    work(chain)
    halted = chain.tick(instance)
    assert halted.skip_message.startswith("halted: block b0 failed: 1 task(s) dead-lettered")
    figures = open_ledger(chain.url).figures("b0")
    assert figures.complete and (len(figures.done), len(figures.dead)) == (2, 1)
    [check] = check_history(instance, chain, "drained")
    metadata = check.event.dagster_event.event_specific_data.metadata
    assert metadata["dead-lettered (ledger)"].value == 1 and metadata["missing"].value == 0


def test_a_stalled_block_shows_its_missing_tasks_on_the_asset_page_then_materializes(
    tmp_path: Path, instance: Any
) -> None:
    chain = ledger_chain(tmp_path)
    [request] = chain.tick(instance).run_requests
    assert chain.upload(instance, "b0", request.tags).success
    work(chain, max_tasks=2)
    assert chain.tick(instance).run_requests == []
    assert check_history(instance, chain, "drained") == []  # tasks still queued, no grace passed yet
    work(chain, ledger=False)  # the last task ran but its record never arrived: the queue reads empty
    stalled = chain.tick(instance)
    assert "1 missing (e.g. b0#2)" in stalled.skip_message
    [check] = check_history(instance, chain, "drained")
    evaluation = check.event.dagster_event.event_specific_data
    assert check.status.value == "FAILED" and evaluation.severity == dg.AssetCheckSeverity.WARN
    meta = evaluation.metadata
    assert meta["missing"].value == 1 and meta["missing sample"].value == ["b0#2"]
    assert (meta["completed (ledger)"].value, meta["inserted"].value, meta["stalled"].value) == (2, 3, True)
    assert drained(instance, chain) == []  # not materialized by the stall
    chain.tick(instance)
    assert len(check_history(instance, chain, "drained")) == 1  # same missing count: not repeated
    with open_ledger(chain.url) as ledger:
        ledger.record([(Identity("b0", 2), DONE)])  # the late record
    data = chain.tick(instance)
    assert [r.partition_key for r in data.run_requests] == ["b1"]
    [record] = drained(instance, chain)
    assert record.asset_materialization.metadata["ledger"].value == "exact"
    newest = check_history(instance, chain, "drained")[0]
    assert newest.status.value == "SUCCEEDED"
