"""Wire compatibility with python-task-queue 2.x, both directions, through its own code.

Upstream's file queue (``fq://``) stores each message body verbatim as a JSON
file, so its producer writes bodies we read, and its consumer reads ours.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import taskqueue

from tests import compat_fns, compat_ours, compat_upstream
from tq_orchestrate import MockTaskQueue, TaskQueue, totask


def upstream_bodies(path: Path) -> list[str]:
    return [p.read_text() for p in sorted((path / "queue").glob("*.json"))]


def test_upstream_payloads_run_on_our_side(tmp_path: Path) -> None:
    up = taskqueue.TaskQueue(f"fq://{tmp_path}", progress=False)
    up.insert(
        [
            compat_upstream.CompatTask("a", np.array([1.0, 2.5]), {"k": [1, 2]}),
            functools.partial(compat_fns.scale, [1, 2], factor=3),
        ]
    )
    bodies = upstream_bodies(tmp_path)
    assert len(bodies) == 2
    compat_ours.SEEN.clear()
    compat_fns.CALLS.clear()
    for body in bodies:
        totask(body).execute()
    assert compat_ours.SEEN == [("ours", "a", 3.5, {"k": [1, 2]})]
    assert compat_fns.CALLS == [[3, 6]]


def test_our_payloads_run_on_upstream_side(tmp_path: Path) -> None:
    up = taskqueue.TaskQueue(f"fq://{tmp_path}", progress=False)
    ours = TaskQueue("mem://compat", progress=False)
    tasks = [
        compat_ours.CompatTask("b", np.array([0.5, 0.25], dtype=np.float32), None),
        functools.partial(compat_fns.scale, [2.0], factor=0.5),
    ]
    # upstream's own storage layer takes message bodies as dicts, as its insert() does
    up.api.insert([json.loads(ours.encode(task)) for task in tasks])
    compat_upstream.SEEN.clear()
    compat_fns.CALLS.clear()
    executed = up.poll(lease_seconds=60, stop_fn=lambda executed: executed >= 2)
    assert executed == 2
    assert compat_upstream.SEEN == [("upstream", "b", 0.75, None)]
    assert compat_fns.CALLS == [[1.0]]


def test_envelope_is_exactly_upstreams() -> None:
    body = TaskQueue("mem://envelope", progress=False).encode(compat_ours.CompatTask("c", [1], {"x": 1}))
    up_body = taskqueue.lib.jsonify(
        {"payload": compat_upstream.CompatTask("c", [1], {"x": 1}).payload(), "queueName": "envelope"}
    )
    assert json.loads(body) == json.loads(up_body)


@pytest.mark.parametrize("parallel", [1])
def test_upstream_style_mock_queue_runs_ours(parallel: int) -> None:
    compat_ours.SEEN.clear()
    with MockTaskQueue(parallel=parallel) as tq:
        tq.insert(compat_ours.CompatTask("d", [1, 1], None))
    assert compat_ours.SEEN == [("ours", "d", 2.0, None)]
