"""The public surface: sorted exports, no heavy imports or side effects at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


# -- the import graph -------------------------------------------------------------

PACKAGE_DIR = Path(tq_orchestrate.__file__).parent


def _module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def _imported(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions too), outside ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not _is_type_checking(node):
            yield from _imported(node)


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package modules one import statement runs (``from a import b`` names a.b if b is a module)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names} & known
    base = node.module or ""
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".rstrip(".")
    found = {f"{base}.{a.name}" for a in node.names} & known
    return found if len(found) == len(node.names) else (found | {base}) & known


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at import time or inside functions."""
    modules = _module_names()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = set().union(*(_targets(name, path, n, known) for n in _imported(tree))) - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` ([] if there is none), found by depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_the_package_has_no_import_cycle() -> None:
    """No module reaches itself through imports, including imports inside functions.

    Edges go to the module an import names (``from .worker._poll import poll`` is
    an edge to ``worker._poll``, not to the ``worker`` package whose ``__init__``
    Python runs first); imports under ``if TYPE_CHECKING:`` never run and are
    left out.
    """
    graph = import_graph()
    assert {"tq_orchestrate._queue", "tq_orchestrate.cli", "tq_orchestrate.worker._loop"} <= set(graph)
    assert "tq_orchestrate.worker._poll" in graph["tq_orchestrate._queue"]  # the walker sees function imports
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_the_worker_loop_does_not_import_click() -> None:
    code = (
        "import sys\n"
        "import tq_orchestrate\n"
        "from tq_orchestrate.worker import Worker, poll, run_worker\n"
        "tq = tq_orchestrate.TaskQueue('mem://x', progress=False)\n"
        "assert poll(tq, burst_seconds=0, progress_seconds=None) == 0\n"
        "assert 'click' not in sys.modules, 'click imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_worker_keeps_its_public_names() -> None:
    from tq_orchestrate import worker

    assert worker.__all__ == [
        "LEASE_SECONDS",
        "PROGRESS_SECONDS",
        "StopFlag",
        "WorkQueue",
        "Worker",
        "WorkerOptions",
        "WorkerStats",
        "handle_signals",
        "import_task_modules",
        "poll",
        "run_worker",
    ]
    for name in [
        *worker.__all__,
        "body_task_name",
        "clip",
        "task_log",
        "IMPORT_HINT",
        "DELETE_FLUSH_SECONDS",
    ]:
        assert hasattr(worker, name), name
