"""The ``tqo`` command line, through click's CliRunner and one real ``tqo`` process."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.sqs_fixtures import (  # noqa: F401 - fixtures registered by import
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    unique_queue_name,
)
from tests.tasks_fixture import WorkerAppendTask, WorkerFailTask, read_lines
from tq_orchestrate import TaskQueue
from tq_orchestrate import cli as cli_module
from tq_orchestrate.backends.memory import MemoryBackend
from tq_orchestrate.cli import cli, option_value, parse_backend_options
from tq_orchestrate.errors import BackendError

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = "tests.tasks_fixture"
COMMANDS = [
    "work",
    "status",
    "purge",
    "release",
    "rezero",
    "dlq",
    "copy",
    "cp",
    "mv",
    "insert",
    "sqs-create",
    "demo",
]


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """`tqo work` configures the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("tq_orchestrate.worker.tasks", "botocore", "boto3", "urllib3")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def queue(tmp_path: Path, name: str = "q", query: str = "") -> str:
    return f"sqlite://{tmp_path}/{name}.db{query}"


def counts(url: str) -> dict[str, object]:
    result = run("status", url, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def payload_lines(out: Path, texts: list[str]) -> str:
    return "\n".join(json.dumps(WorkerAppendTask(str(out), t).payload()) for t in texts) + "\n"


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- help -----------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"tqo {command}" in result.stdout


# -- insert and status ----------------------------------------------------------------


def test_insert_from_a_file_then_status(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    source = tmp_path / "tasks.jsonl"
    envelope = json.dumps({"payload": WorkerAppendTask(str(out), "env").payload(), "queueName": "x"})
    source.write_text(payload_lines(out, ["a", "b"]) + "\n" + envelope + "\n")
    result = run("insert", url, str(source), "--import", FIXTURE)
    assert result.exit_code == 0, result.output
    assert "inserted 3 tasks" in result.stdout
    data = counts(url)
    assert (data["enqueued"], data["visible"], data["inserted"], data["dead"]) == (3, 3, 3, 0)
    table = run("status", url).stdout
    assert "visible    3" in table and "completed  0" in table


def test_insert_from_stdin(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    result = run("insert", url, "-", "-i", FIXTURE, input=payload_lines(out, ["x", "y", "z"]))
    assert result.exit_code == 0, result.output
    assert counts(url)["visible"] == 3


def test_a_bad_line_names_its_number_and_nothing_is_inserted(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    text = payload_lines(out, ["a", "b"]) + '{"class": "NoSuchTask"}\n' + payload_lines(out, ["c"])
    result = run("insert", url, "-", "-i", FIXTURE, input=text)
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("Error: line 3:") and "NoSuchTask" in line and "nothing was inserted" in line
    assert "--import MODULE" in line
    assert not (tmp_path / "q.db").exists()  # the queue was never opened
    broken = run("insert", url, "-", "-i", FIXTURE, input=payload_lines(out, ["a"]) + "{not json\n")
    assert broken.exit_code == 1 and error_line(broken).startswith("Error: line 2: invalid task payload")


def test_errors_are_one_line_with_a_nonzero_exit(tmp_path: Path) -> None:
    unknown = run("status", "nosuchscheme://x")
    assert unknown.exit_code == 1
    assert "unknown queue URL scheme 'nosuchscheme'" in error_line(unknown)
    missing = run("work", queue(tmp_path), "--import", "no_such_module_anywhere", "--burst")
    assert missing.exit_code == 1
    assert "cannot import task module 'no_such_module_anywhere'" in error_line(missing)
    usage = run("work", queue(tmp_path), "--num-tasks", "11")
    assert usage.exit_code == 2


# -- work -----------------------------------------------------------------------


def test_work_drains_the_queue_in_burst_mode(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(12)])
    result = run("work", url, "-i", FIXTURE, "--num-tasks", "5", "--burst", "--log-json")
    assert result.exit_code == 0, result.output
    assert sorted(read_lines(out), key=int) == [str(i) for i in range(12)]
    events = [json.loads(x) for x in result.stderr.splitlines() if '"outcome"' in x]
    assert len(events) == 12 and {e["outcome"] for e in events} == {"ok"}
    assert {e["class"] for e in events} == {"WorkerAppendTask"}
    assert counts(url)["completed"] == 12


def test_work_stop_on_error_exits_1_with_one_line(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerFailTask(str(out), "x")])
    result = run("work", url, "-i", FIXTURE, "--stop-on-error", "--burst", "--log-level", "CRITICAL")
    assert result.exit_code == 1
    assert error_line(result).startswith("Error: task ") and "always fails" in result.stderr


def test_work_exits_1_with_one_line_when_the_queue_refuses_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: MemoryBackend, *args: Any, **kwargs: Any) -> list[Any]:
        raise BackendError("ReceiveMessage failed: AccessDenied: not authorized (HTTP 403)", queue="q")

    monkeypatch.setattr(MemoryBackend, "receive", denied)
    try:
        result = run("work", "mem://cli-denied", "--burst", "--log-level", "CRITICAL")
    finally:
        MemoryBackend.reset_all()
    assert result.exit_code == 1
    assert error_line(result) == "Error: q: ReceiveMessage failed: AccessDenied: not authorized (HTTP 403)"


def test_work_waits_out_connection_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    url = "mem://cli-flaky"
    tq = TaskQueue(url, progress=False)
    tq.insert([WorkerAppendTask(str(out), "a")])
    real = MemoryBackend.receive
    calls: list[int] = []

    def flaky(self: MemoryBackend, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionResetError("connection reset by peer")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MemoryBackend, "receive", flaky)
    try:
        result = run("work", url, "-i", FIXTURE, "--burst", "--min-backoff", "0.01", "--max-backoff", "0.02")
        assert result.exit_code == 0, result.output
        assert result.stderr.count("receive failed, backing off: ConnectionResetError") == 2
        assert read_lines(out) == ["a"] and tq.counts().completed == 1
    finally:
        MemoryBackend.reset_all()


# -- backend options (-o KEY=VALUE) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("12", 12),
        ("-3", -3),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("us-east-1", "us-east-1"),
        ("http://127.0.0.1:9324", "http://127.0.0.1:9324"),
        ('"007"', "007"),
        ('"true"', "true"),
        ("", ""),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("yes", "yes"),
        ("a=b", "a=b"),
    ],
)
def test_option_values_become_bool_int_or_float_when_they_look_like_one(text: str, value: object) -> None:
    parsed = option_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_backend_options_parse_key_value_pairs() -> None:
    parsed = parse_backend_options(["max_receives=3", "endpoint_url=http://h:1/x?a=b", "create=true"])
    assert parsed == {"max_receives": 3, "endpoint_url": "http://h:1/x?a=b", "create": True}
    for bad, why in [
        (["novalue"], "is not KEY=VALUE"),
        (["=1"], "is not KEY=VALUE"),
        (["a-b=1"], "is not KEY=VALUE"),
        (["progress=false"], "'progress' is not a backend option"),
        (["concurrency=4"], "'concurrency' is not a backend option"),
        (["a=1", "a=2"], "'a' is given twice"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_backend_options(bad)


def test_work_takes_backend_options_over_the_url_query(tmp_path: Path) -> None:
    url, out = queue(tmp_path, query="?max_receives=5"), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerFailTask(str(out), "x")])
    args = ["-i", FIXTURE, "--burst", "--retry-delay", "0", "--log-level", "CRITICAL"]
    result = run("work", url, *args, "-o", "max_receives=1", "--option", "busy_timeout_seconds=2.5")
    assert result.exit_code == cli_module.EXIT_TASKS_FAILED, result.output
    assert read_lines(out) == ["fail x"]  # dead-lettered after one receive, not five
    assert counts(url)["dead"] == 1


@pytest.mark.parametrize(
    "command",
    [["status"], ["purge", "--yes"], ["release"], ["dlq"], ["insert", "{source}", "-i", FIXTURE]],
)
def test_every_url_command_takes_backend_options(tmp_path: Path, command: list[str]) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    source = tmp_path / "tasks.jsonl"
    source.write_text(payload_lines(out, ["a"]))
    TaskQueue(url, progress=False).counts()  # the file exists
    args = [a.replace("{source}", str(source)) for a in command]
    good = run(args[0], url, *args[1:], "-o", "durability=full", "-o", "max_receives=2")
    assert good.exit_code == 0, good.output
    bad = run(args[0], url, *args[1:], "-o", "no_such_option=1")
    assert bad.exit_code == 1
    assert "unknown option 'no_such_option'" in error_line(bad)
    usage = run(args[0], url, *args[1:], "-o", "no_value")
    assert usage.exit_code == 2 and "is not KEY=VALUE" in usage.stderr


def test_copy_takes_backend_options_for_each_queue(tmp_path: Path) -> None:
    src, dst, out = queue(tmp_path, "src"), queue(tmp_path, "dst"), tmp_path / "out"
    with TaskQueue(src, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), "a")])
    ok = run(
        "copy", src, dst, "-i", FIXTURE, "--src-option", "max_receives=2", "--dst-option", "durability=full"
    )
    assert ok.exit_code == 0, ok.output
    assert counts(dst)["visible"] == 1
    for flag in ("--src-option", "--dst-option"):
        bad = run("copy", src, dst, "-i", FIXTURE, flag, "bogus=1")
        assert bad.exit_code == 1 and "unknown option 'bogus'" in error_line(bad)
        assert (dst if flag == "--dst-option" else src) in error_line(bad)


# -- purge and release ------------------------------------------------------------------


def test_purge_asks_first_unless_yes(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), "a")])
    refused = run("purge", url, input="n\n")
    assert refused.exit_code == 1 and counts(url)["enqueued"] == 1
    accepted = run("purge", url, input="y\n")
    assert accepted.exit_code == 0 and counts(url)["enqueued"] == 0
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), "b")])
    assert run("purge", url, "--yes").exit_code == 0 and counts(url)["enqueued"] == 0


def test_release_makes_leased_tasks_visible(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
        tq.receive(2, 600)
    assert counts(url)["leased"] == 2
    result = run("release", url)
    assert result.exit_code == 0 and "released 2 tasks" in result.stdout
    assert (counts(url)["visible"], counts(url)["leased"]) == (3, 0)


# -- dead letters ---------------------------------------------------------------


def test_dlq_lists_class_receives_and_error_then_redrives(tmp_path: Path) -> None:
    url, out = queue(tmp_path, query="?max_receives=1"), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerFailTask(str(out), "x"), WorkerAppendTask(str(out), "ok")])
        tq.backend.send_batch(["{garbage"])
    worked = run("work", url, "-i", FIXTURE, "--burst", "--retry-delay", "0", "--log-level", "CRITICAL")
    assert worked.exit_code == cli_module.EXIT_TASKS_FAILED
    assert error_line(worked) == (
        "Error: 1 task run failed and 1 corrupt message dead-lettered; 1 task succeeded"
    )
    listed = run("dlq", url)
    assert listed.exit_code == 0
    rows = listed.stdout.strip().splitlines()
    assert rows[-1] == "2 dead-lettered tasks"
    fail_row = next(r for r in rows if "WorkerFailTask" in r)
    assert "receives=1" in fail_row and "RuntimeError: task x always fails" in fail_row
    assert any(r.split("\t")[1] == "?" and "corrupt payload" in r for r in rows[:-1])
    as_json = [json.loads(x) for x in run("dlq", url, "--json").stdout.splitlines()]
    assert sorted(d["class"] for d in as_json) == ["?", "WorkerFailTask"]
    assert {d["body"] for d in as_json} >= {"{garbage"}
    redrive = run("dlq", url, "--redrive")
    assert redrive.exit_code == 0 and "redrove 2 tasks" in redrive.stdout
    assert (counts(url)["dead"], counts(url)["visible"]) == (0, 2)


# -- copy -----------------------------------------------------------------------


def test_copy_keeps_the_source_and_move_empties_it(tmp_path: Path) -> None:
    src, dst, dst2 = queue(tmp_path, "src"), queue(tmp_path, "dst"), queue(tmp_path, "dst2")
    out = tmp_path / "out"
    with TaskQueue(src, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(25)])
        tq.backend.send_batch(["not a task"])
    copied = run("copy", src, dst, "-i", FIXTURE)
    assert copied.exit_code == 0, copied.output
    assert "copied 25 tasks" in copied.stdout and "skipped 1" in copied.stdout
    assert "skipped message" in copied.stderr
    assert (counts(src)["visible"], counts(src)["leased"], counts(dst)["visible"]) == (26, 0, 25)
    moved = run("copy", src, dst2, "-i", FIXTURE, "--move")
    assert moved.exit_code == 0 and "moved 25 tasks" in moved.stdout
    assert (counts(src)["visible"], counts(dst2)["visible"]) == (1, 25)
    result = run("work", dst2, "-i", FIXTURE, "--burst")
    assert result.exit_code == 0
    assert sorted(read_lines(out), key=int) == [str(i) for i in range(25)]


# -- SQS queue pair -------------------------------------------------------------


def test_sqs_create_makes_a_queue_with_a_dead_letter_queue(moto_server: str) -> None:
    name = unique_queue_name("cli")
    result = run("sqs-create", name, "--max-receives", "2", "--endpoint-url", moto_server)
    assert result.exit_code == 0, result.output
    queue_line, dlq_line = result.stdout.strip().splitlines()
    queue_url = queue_line.split()[1]
    assert queue_url.endswith(f"/{name}") and f"/{name}-dlq" in dlq_line
    again = run("sqs-create", name, "--max-receives", "2", "--endpoint-url", moto_server)
    assert again.exit_code == 0 and again.stdout == result.stdout
    assert counts(queue_url)["dead"] == 0  # the redrive policy names the dead-letter queue


# -- demo -----------------------------------------------------------------------


def test_demo_without_its_module_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "DEMO_MODULE", "tq_orchestrate.orchestration.no_such_demo")
    result = run("demo")
    assert result.exit_code == 1
    assert "the demo is not available" in error_line(result)


def test_demo_passes_its_arguments_to_main(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("fake_demo_for_cli_test")
    fake.main = lambda args: seen.append(args)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_demo_for_cli_test", fake)
    monkeypatch.setattr(cli_module, "DEMO_MODULE", "fake_demo_for_cli_test")
    result = run("demo", "--", "--blocks", "3")
    assert result.exit_code == 0, result.output
    assert seen == [["--blocks", "3"]]


# -- the real console script ----------------------------------------------------------


@pytest.mark.slow
def test_the_tqo_console_script_works_and_drains_a_queue(tmp_path: Path) -> None:
    tqo = shutil.which("tqo", path=str(Path(sys.executable).parent))
    assert tqo is not None, "the tqo console script is not installed next to this Python"
    url, out = queue(tmp_path), tmp_path / "out"
    source = tmp_path / "tasks.jsonl"
    source.write_text(payload_lines(out, ["1", "2", "3"]))

    def tqo_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([tqo, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert tqo_run("insert", url, str(source), "-i", FIXTURE).returncode == 0
    worked = tqo_run("work", url, "-i", FIXTURE, "--burst")
    assert worked.returncode == 0, worked.stderr
    assert sorted(read_lines(out)) == ["1", "2", "3"]
    status = tqo_run("status", url, "--json")
    assert json.loads(status.stdout)["completed"] == 3
    bad = tqo_run("status", "nosuchscheme://x")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: ")


# -- issue 10: missing queue files, burst exit status, ptq commands, --watch ----------------


@pytest.mark.parametrize(
    "command", [["status"], ["dlq"], ["purge", "--yes"], ["release"], ["rezero"], ["work", "--burst"]]
)
def test_a_missing_queue_file_is_an_error_naming_path_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(command[0], "sqlite://typo.db", *command[1:])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: queue sqlite://typo.db: file ")
    assert str(tmp_path / "typo.db") in line and f"working directory {tmp_path}" in line
    assert not (tmp_path / "typo.db").exists()


def test_a_bare_missing_name_is_an_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("status", "my-queue")
    assert result.exit_code == 1 and "does not exist" in error_line(result)


def test_work_create_waits_for_a_producer_on_a_missing_file(tmp_path: Path) -> None:
    url = queue(tmp_path)
    result = run("work", url, "--create", "--burst")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "q.db").exists()


def test_insert_still_creates_the_queue_file(tmp_path: Path) -> None:
    url, out = queue(tmp_path, "new"), tmp_path / "out"
    result = run("insert", url, "-", "-i", FIXTURE, input=payload_lines(out, ["a"]))
    assert result.exit_code == 0, result.output
    assert counts(url)["visible"] == 1


def test_work_burst_exits_0_only_when_every_task_succeeded(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), "ok")])
    assert run("work", url, "-i", FIXTURE, "--burst").exit_code == 0
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerFailTask(str(out), "x"), WorkerAppendTask(str(out), "ok2")])
    failed = run("work", url, "-i", FIXTURE, "--burst", "--retry-delay", "60", "--log-level", "CRITICAL")
    assert failed.exit_code == 3
    assert error_line(failed) == (
        "Error: 1 task run failed and 0 corrupt messages dead-lettered; 1 task succeeded"
    )


def test_work_logs_progress_at_the_default_level(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    result = run("work", url, "-i", FIXTURE, "--burst", "--progress-seconds", "0.000001")
    assert result.exit_code == 0
    assert "progress: 3 done, 0 failed" in result.stderr
    quiet = run("work", url, "-i", FIXTURE, "--burst", "--progress-seconds", "0")
    assert "progress:" not in quiet.stderr


def test_rezero_zeroes_the_totals_and_keeps_the_tasks(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    result = run("rezero", url)
    assert result.exit_code == 0 and f"rezeroed {url}" in result.stdout
    data = counts(url)
    assert (data["inserted"], data["completed"], data["enqueued"]) == (0, 0, 3)


def test_mv_and_cp_with_load_are_ptqs_commands(tmp_path: Path) -> None:
    src, dst, dst2 = queue(tmp_path, "src"), queue(tmp_path, "dst"), queue(tmp_path, "dst2")
    out = tmp_path / "out"
    with TaskQueue(src, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(5)])
    copied = run("cp", src, dst, "--load", FIXTURE)
    assert copied.exit_code == 0 and "copied 5 tasks" in copied.stdout
    moved = run("mv", src, dst2, "--import", FIXTURE)
    assert moved.exit_code == 0 and "moved 5 tasks" in moved.stdout
    assert (counts(src)["enqueued"], counts(dst)["enqueued"], counts(dst2)["enqueued"]) == (0, 5, 5)
    missing = run("mv", queue(tmp_path, "nosuch"), dst, "-i", FIXTURE)
    assert missing.exit_code == 1 and "does not exist" in error_line(missing)


def test_drain_rate_and_eta() -> None:
    assert cli_module.drain_rate([(0.0, 10)]) is None
    assert cli_module.drain_rate([(0.0, 10), (5.0, 20), (10.0, 40)]) == 3.0
    assert cli_module.drain_rate([(0.0, -100), (10.0, -50)]) == 5.0  # backlog falling
    assert cli_module.eta_text(3725, 1.0) == "1:02:05"
    assert cli_module.eta_text(10, None) == "-" and cli_module.eta_text(10, -1.0) == "-"
    assert cli_module.eta_text(0, None) == "0:00:00"


def test_status_watch_prints_rate_and_eta(tmp_path: Path) -> None:
    url, out = queue(tmp_path), tmp_path / "out"
    with TaskQueue(url, progress=False) as tq:
        tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(4)])
    result = run("status", url, "--watch", "0.01", "--readings", "2")
    assert result.exit_code == 0, result.output
    first, second = result.stdout.strip().splitlines()
    assert "enqueued 4 leased 0 completed 0 rate - tasks/s ETA -" in first
    assert "rate 0.00 tasks/s ETA -" in second


def test_status_watch_refuses_json_and_readings_needs_watch(tmp_path: Path) -> None:
    url = queue(tmp_path)
    TaskQueue(url, progress=False).counts()
    both = run("status", url, "--watch", "1", "--json")
    assert both.exit_code == 2 and "--json and --watch cannot be combined" in both.stderr
    alone = run("status", url, "--readings", "2")
    assert alone.exit_code == 2 and "--readings needs --watch" in alone.stderr
