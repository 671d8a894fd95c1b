"""Igneous end to end: its tasks through our queues give the files python-task-queue gives.

A small image volume made with CloudVolume on ``file://`` is downsampled by
Igneous (``DownsampleTask``, a queueable function with Vec and enum arguments)
and sampled by ``LuminanceLevelsTask`` (a RegisteredTask class). Each way of
running them must write exactly the files python-task-queue's own
LocalTaskQueue writes for an identical volume:

* our LocalTaskQueue with two processes;
* the embedded queue drained by ``tqo work URL --import igneous.tasks --burst``;
* SQS on a moto server over HTTP, both ways: python-task-queue inserts and we
  run, and we insert and python-task-queue's ``poll`` runs.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sqs_fixtures import (  # noqa: F401  # noqa: F401
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    unique_queue_name,
)
from tq_orchestrate import LocalTaskQueue, TaskQueue, _upstream, import_task_modules

igneous_creation = pytest.importorskip("igneous.task_creation")
cloudvolume = pytest.importorskip("cloudvolume")
taskqueue = pytest.importorskip("taskqueue")

pytestmark = pytest.mark.slow

TASK_COUNT = 11  # 2 downsampling tasks (z 0-4, 4-8) and 9 luminance level slices (z 0..8)


def make_volume(path: Path) -> str:
    """A 128x128x8 uint8 image in 32x32x4 chunks, the same pixels every time."""
    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=[4, 4, 40],
        voxel_offset=[0, 0, 0],
        chunk_size=[32, 32, 4],
        volume_size=[128, 128, 8],
    )
    url = f"file://{path}"
    vol = cloudvolume.CloudVolume(url, info=info, progress=False)
    vol.commit_info()
    rng = np.random.default_rng(7)
    vol[:, :, :] = rng.integers(0, 256, size=(128, 128, 8, 1), dtype=np.uint8)
    return url


def igneous_tasks(path: Path) -> list[Any]:
    """A fresh volume at ``path`` and the Igneous tasks that downsample and sample it."""
    url = make_volume(path)
    downsample = list(igneous_creation.create_downsampling_tasks(url, mip=0, num_mips=2))
    levels = list(igneous_creation.create_luminance_levels_tasks(url, coverage_factor=1.0))
    tasks = downsample + levels
    assert len(tasks) == TASK_COUNT
    return tasks


def outputs(path: Path) -> dict[str, bytes]:
    """Every file of the volume, by relative path (the provenance file names the path itself)."""
    files = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    files.pop("provenance", None)
    return files


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What python-task-queue's own LocalTaskQueue writes."""
    path = tmp_path_factory.mktemp("reference") / "vol"
    method = multiprocessing.get_start_method(allow_none=True)
    try:
        tq = taskqueue.LocalTaskQueue(parallel=1, progress=False)
        tq.insert(igneous_tasks(path))
        tq.execute(progress=False)
    finally:  # its execute() sets the start method for the whole process
        multiprocessing.set_start_method(method, force=True)
    files = outputs(path)
    assert {"8_8_40", "16_16_40", "levels"} <= {name.split("/")[0] for name in files}
    assert len([n for n in files if n.startswith("levels/")]) == 8
    return files


@pytest.fixture
def worker_admission(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's admitted task modules, undone after the test."""
    monkeypatch.setattr(_upstream, "_ADMITTED", set())
    yield


def test_local_task_queue_with_two_processes(expected: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "vol"
    with LocalTaskQueue(parallel=2, progress=False) as tq:
        assert tq.insert(igneous_tasks(path)) == TASK_COUNT
    assert outputs(path) == expected


def _tqo() -> list[str]:
    script = Path(sys.executable).with_name("tqo")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from tq_orchestrate.cli import main; sys.argv[0] = 'tqo'; main()",
    ]


def test_embedded_queue_and_tqo_work(expected: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "vol"
    url = f"sqlite://{tmp_path / 'igneous.db'}"
    with TaskQueue(url, progress=False) as tq:
        assert tq.insert(igneous_tasks(path)) == TASK_COUNT
        args = ["work", url, "--import", "igneous.tasks", "--burst", "--empty-for", "0.5"]
        done = subprocess.run([*_tqo(), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        counts = tq.counts()
    assert (counts.pending, counts.dead) == (0, 0)
    assert outputs(path) == expected


def test_sqs_upstream_inserts_and_our_worker_runs(
    expected: dict[str, bytes], moto_server: str, tmp_path: Path, worker_admission: None
) -> None:
    name = unique_queue_name("igneous-in")
    ours = TaskQueue(f"sqs://{name}", progress=False, endpoint_url=moto_server, create=True)
    ours.is_empty()  # creates the queue
    theirs = taskqueue.TaskQueue(
        f"sqs://{name}", region_name="us-east-1", endpoint_url=moto_server, progress=False
    )
    path = tmp_path / "vol"
    assert theirs.insert(igneous_tasks(path)) == TASK_COUNT
    import_task_modules(["igneous.tasks"])
    executed = ours.poll(
        lease_seconds=60, stop_fn=lambda executed: executed >= TASK_COUNT, min_backoff_window=0.1
    )
    assert executed == TASK_COUNT
    assert outputs(path) == expected
    ours.close()


def test_sqs_we_insert_and_upstream_poll_runs(
    expected: dict[str, bytes], moto_server: str, tmp_path: Path
) -> None:
    name = unique_queue_name("igneous-out")
    ours = TaskQueue(f"sqs://{name}", progress=False, endpoint_url=moto_server, create=True)
    path = tmp_path / "vol"
    assert ours.insert(igneous_tasks(path)) == TASK_COUNT
    theirs = taskqueue.TaskQueue(
        f"sqs://{name}", region_name="us-east-1", endpoint_url=moto_server, progress=False
    )
    executed = theirs.poll(lease_seconds=60, stop_fn=lambda executed: executed >= TASK_COUNT)
    assert executed == TASK_COUNT
    assert outputs(path) == expected
    ours.close()
