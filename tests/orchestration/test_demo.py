"""`tqo demo`: the command, its exit codes and its messages."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tq_orchestrate.orchestration import demo
from tq_orchestrate.orchestration.demo import drive_chain

from .conftest import OWNERS_BETA, TASKS, Pipeline

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)

REPO = Path(demo.__file__).resolve().parents[2]
SMALL = ["--blocks", "3", "--block-depth", "2", "--size", "48", "--tile", "16"]


@pytest.mark.slow
def test_tqo_demo_with_default_settings_passes_its_check() -> None:
    code = "import sys; from tq_orchestrate.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo"], cwd=REPO, capture_output=True, text=True, timeout=110
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[") and "4 blocks x 64 tasks, 2 workers" in lines[0]
    uploads = [line for line in lines if "uploaded 64 tasks" in line]
    assert [line.split("block ")[1][:4] for line in uploads] == ["0000", "0001", "0002", "0003"]
    assert lines[-1].endswith("output equals np.cumsum(volume, axis=0) for shape (32, 256, 256)")
    assert "check passed (verified materialized by its automation condition)" in lines[-1]
    assert "Warning" not in result.stderr


@pytest.mark.slow
def test_demo_main_keeps_its_work_dir_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([*SMALL, "--workers", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "series complete: 3 blocks" in out and "check passed" in out
    assert (tmp_path / "queue.db").exists() and (tmp_path / "worker-0.log").exists()
    assert len(list((tmp_path / "data" / "output").glob("block_0002/tile_*.npy"))) == 9


@pytest.mark.slow
def test_demo_reports_a_timeout_as_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([*SMALL, "--timeout", "0"]) == 1
    assert "FAILED: timed out after 0s" in capsys.readouterr().out


def test_demo_without_the_example_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Any:
        raise ModuleNotFoundError("No module named 'dagster'")

    monkeypatch.setattr(demo, "_load_example", missing)
    assert demo.main([]) == 2
    assert "cannot import the example deployment (No module named 'dagster')" in capsys.readouterr().out


def test_demo_rejects_nonsense_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--blocks", "0"])
    assert exc.value.code == 2
    assert "--blocks and --workers must be at least 1" in capsys.readouterr().err


def test_drive_chain_stops_when_the_sensor_halts(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(task_factory=f"{TASKS}:short_factory")
    outcome = drive_chain(
        pipe.defs, instance, job_name="blocks", sensor_name="blocks_chain", timeout_seconds=60
    )
    assert not outcome.complete
    assert outcome.reason.startswith("halted: block b0 run ")
    assert [(key, ok) for key, _, ok in outcome.runs] == [("b0", False)]


def test_drive_chain_completes_with_an_in_process_worker(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=3)
    ticks: list[str] = []

    def work_then_continue() -> None:
        pipe.work()
        return None

    outcome = drive_chain(
        pipe.defs,
        instance,
        job_name="blocks",
        sensor_name="blocks_chain",
        on_tick=lambda reason, _: ticks.append(reason),
        stop=work_then_continue,
    )
    assert outcome.complete, outcome.reason
    assert [key for key, _, _ in outcome.runs] == ["b0", "b1", "b2"]
    # each block drained within the tick that followed its run: the only skip is the last one
    assert len(ticks) == 1 and "complete: block b2 was the last" in ticks[0]


@pytest.mark.slow
def test_demo_records_into_the_dagster_home_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dagster as dg

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert demo.main([*SMALL, "--workdir", str(tmp_path / "work")]) == 0
    assert f"recording into the Dagster instance at {home}" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        blocks = instance.fetch_materializations(dg.AssetKey("cumsum_blocks"), limit=10, ascending=True)
        assert [r.partition_key for r in blocks.records] == ["0000", "0001", "0002"]
        assert instance.fetch_materializations(dg.AssetKey("verified"), limit=1).records
        check = dg.AssetCheckKey(dg.AssetKey("cumsum_blocks"), "dead_letters")
        history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
        assert len(history) == 3
