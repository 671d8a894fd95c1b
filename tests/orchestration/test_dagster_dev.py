"""`dagster dev` on the example, driven through GraphQL as a person clicks through the UI.

Materialize `volume`, turn on `cumsum_chain`, start workers; then every block of
`cumsum_blocks` must materialize, in block order, and `verified` must follow by
its automation condition.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tq_orchestrate.orchestration.demo import worker_processes
from tq_orchestrate.orchestration.example import pipeline

from .dagster_dev import dagster_dev, materializations, materialize_volume, start_sensor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(170)]

BLOCKS = 3
KEYS = [f"{i:04d}" for i in range(BLOCKS)]


def test_dagster_dev_chains_blocks_and_verifies_by_itself(tmp_path: Path) -> None:
    began = time.monotonic()
    with dagster_dev(tmp_path, blocks=BLOCKS) as dev:
        up = time.monotonic() - began
        materialize_volume(dev, {"block_depth": 2, "height": 64, "width": 64, "tile": 32})
        start_sensor(dev, f"{pipeline.NAME}_chain")
        url = f"sqlite://{dev.example / 'queue.db'}"
        with worker_processes(2, url, pipeline.TASKS_MODULE, log_dir=tmp_path):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not materializations(dev, pipeline.VERIFIED):
                time.sleep(1)
        blocks = materializations(dev, f"{pipeline.NAME}_blocks")
        uploads = materializations(dev, f"{pipeline.NAME}_upload")
        verified = materializations(dev, pipeline.VERIFIED)
    log = (tmp_path / "dagster_dev.log").read_text(errors="replace")
    assert verified, f"verified never materialized; blocks {blocks}; log tail:\n{log[-4000:]}"
    assert [m["partition"] for m in blocks] == KEYS
    assert [m["partition"] for m in uploads] == KEYS, (uploads, _runs(tmp_path / "dagster_home"))
    for upload, block in zip(uploads, blocks, strict=True):
        assert float(block["timestamp"]) > float(upload["timestamp"])
    for block, next_upload in zip(blocks, uploads[1:], strict=False):
        assert float(next_upload["timestamp"]) > float(block["timestamp"]), "a block started early"
    assert float(verified[0]["timestamp"]) > float(blocks[-1]["timestamp"])
    assert "BetaWarning" not in log and "PreviewWarning" not in log, log[-4000:]
    print(f"dagster dev up in {up:.1f}s; whole test {time.monotonic() - began:.1f}s")


def _runs(home: Path) -> list[tuple[str, str, dict[str, str]]]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        return [
            (r.dagster_run.job_name, r.dagster_run.status.value, dict(r.dagster_run.tags)) for r in records
        ]
