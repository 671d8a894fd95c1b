"""Run `dagster dev` on the example in a subprocess and talk to it through GraphQL.

Used by the slow UI test and by docs/make_screenshots.py. The server binds
127.0.0.1 on a free port, with a temporary DAGSTER_HOME and example directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, home, example directory and log file."""

    url: str
    home: Path
    example: Path
    log: Path
    location: str = ""
    repository: str = ""

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        """POST a GraphQL query; the ``data`` of the answer (AssertionError on GraphQL errors)."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]  # type: ignore[no-any-return]

    def selector(self, **extra: Any) -> dict[str, Any]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository, **extra}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # dagster dev shuts its webserver, daemon and code server down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _reset_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def dagster_dev(work: Path, blocks: int = 3, startup_seconds: float = 90.0) -> Iterator[DagsterDev]:
    """Start `dagster dev -w workspace.yaml` for the example under ``work``; stop it on exit."""
    home, example = work / "dagster_home", work / "example"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TQO_EXAMPLE_DIR": str(example),
        "TQO_EXAMPLE_BLOCKS": str(blocks),
    }
    env.pop("TQO_QUEUE_URL", None)
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = work / "dagster_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_reset_sigint,
            start_new_session=True,
        )
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, example, log)
    try:
        _wait_until_up(dev, proc, startup_seconds)
        yield dev
    finally:
        _stop(proc)


def _wait_until_up(dev: DagsterDev, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited: {dev.log.read_text()[-3000:]}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, AssertionError, TimeoutError):
            nodes = dev.gql(query)["repositoriesOrError"].get("nodes") or []
            if nodes:
                dev.repository, dev.location = nodes[0]["name"], nodes[0]["location"]["name"]
                return
        time.sleep(0.5)
    raise RuntimeError(f"dagster dev did not answer in {seconds:g}s: {dev.log.read_text()[-3000:]}")


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""

MATERIALIZATIONS = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations { partition timestamp runId } }
  }
}"""


def materialize_volume(dev: DagsterDev, config: dict[str, int]) -> str:
    """Launch a run of the `volume` asset (as the UI's Materialize button does); its run id."""
    params = {
        "selector": dev.selector(jobName="__ASSET_JOB", assetSelection=[{"path": ["volume"]}]),
        "runConfigData": {"ops": {"volume": {"config": config}}},
        "mode": "default",
    }
    answer = dev.gql(LAUNCH, params=params)["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return str(answer["run"]["runId"])


def start_sensor(dev: DagsterDev, name: str) -> None:
    answer = dev.gql(START_SENSOR, selector=dev.selector(sensorName=name))["startSensor"]
    assert answer["__typename"] == "Sensor", answer


def materializations(dev: DagsterDev, asset: str) -> list[dict[str, Any]]:
    """The asset's materializations, oldest first."""
    found = dev.gql(MATERIALIZATIONS, path=[asset])["assetOrError"].get("assetMaterializations") or []
    return sorted(found, key=lambda m: float(m["timestamp"]))
