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


def test_errors_survive_pickling_with_their_context() -> None:
    import pickle

    error = errors.UploadError("boom", inserted=5, failed=[(3, "x")])
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is errors.UploadError
    assert (clone.inserted, clone.failed, str(clone)) == (5, [(3, "x")], str(error))
