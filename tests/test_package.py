"""The public surface: sorted exports, no heavy imports or side effects at import."""

from __future__ import annotations

import subprocess
import sys

import tq_orchestrate
from tq_orchestrate import errors


def test_all_is_sorted_and_exported() -> None:
    assert tq_orchestrate.__all__ == sorted(tq_orchestrate.__all__)
    for name in tq_orchestrate.__all__:
        assert hasattr(tq_orchestrate, name), name


def test_every_error_is_exported_and_under_the_root() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) > 10
    for cls in classes:
        assert issubclass(cls, errors.TaskQueueError)
        assert cls.__name__ in tq_orchestrate.__all__, cls.__name__


def test_import_pulls_in_neither_dagster_nor_boto3_and_sets_nothing_up() -> None:
    code = (
        "import logging, signal, sys\n"
        "before = signal.getsignal(signal.SIGTERM), logging.getLogger().handlers[:]\n"
        "import tq_orchestrate\n"
        "assert tq_orchestrate.TaskQueue('mem://x').is_empty()\n"
        "assert 'dagster' not in sys.modules, 'dagster imported'\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto imported'\n"
        "assert (signal.getsignal(signal.SIGTERM), logging.getLogger().handlers) == before\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_HEAVY = ("numpy", "tqdm", "boto3", "botocore", "dagster", "click", "multiprocessing", "tenacity")

_ENCODE_ARRAYS = """
import tq_orchestrate
from tq_orchestrate import MockTask, TaskQueue
q = TaskQueue("mem://enc", progress=False)
plain = q.encode(MockTask(n=1, label="x", values=[1.5, 2]))
import numpy as np
values = {"a": np.arange(6, dtype="<i4").reshape(2, 3), "f": np.float32(0.25), "i": np.int64(7)}
print(plain)
print(q.encode(MockTask(**values)))
print(TaskQueue("mem://enc", array_format="typed").encode(MockTask(**values)))
"""


def test_import_stays_light() -> None:
    """numpy, tqdm, botocore, dagster, click, multiprocessing, tenacity: none at import,
    and numpy not for a task without arrays (each costs milliseconds of every import)."""
    code = (
        "import sys\n"
        "import tq_orchestrate\n"
        f"heavy = {_HEAVY!r}\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "tq_orchestrate.TaskQueue('mem://x', progress=False).insert([tq_orchestrate.PrintTask('hi')])\n"
        "assert 'numpy' not in sys.modules and 'tqdm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_values_encode_the_same_whether_numpy_came_first_or_later() -> None:
    """numpy is found lazily (through sys.modules); the bodies do not change."""
    late = subprocess.run([sys.executable, "-c", _ENCODE_ARRAYS], check=True, capture_output=True, text=True)
    early = subprocess.run(
        [sys.executable, "-c", "import numpy\n" + _ENCODE_ARRAYS], check=True, capture_output=True, text=True
    )
    assert late.stdout == early.stdout
    lines = late.stdout.splitlines()
    assert '"a":[[0,1,2],[3,4,5]]' in lines[1] and '"f":0.25' in lines[1] and '"i":7' in lines[1]
    assert '"__ndarray__"' in lines[2]


def test_a_typed_array_decodes_without_numpy_imported_first() -> None:
    code = (
        "import sys, tq_orchestrate\n"
        'body = \'{"payload":{"class":"MockTask","a":'
        '{"__ndarray__":"AQAAAAIAAAA=","dtype":"<i4","shape":[2]}},"queueName":"q"}\'\n'
        "assert 'numpy' not in sys.modules\n"
        "a = tq_orchestrate._payload.loads(body)['payload']['a']\n"
        "assert a.tolist() == [1, 2] and str(a.dtype) == 'int32', a\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_errors_survive_pickling_with_their_context() -> None:
    import pickle

    error = errors.UploadError("boom", inserted=5, failed=[(3, "x")])
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is errors.UploadError
    assert (clone.inserted, clone.failed, str(clone)) == (5, [(3, "x")], str(error))
