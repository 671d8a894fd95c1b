"""Pytest fixtures for SQS tests: moto in-process and a moto server over real HTTP.

Use from a test module by importing the fixture functions (``fixture_<name>``,
registered under ``<name>``), e.g. ``from tests.sqs_fixtures import fixture_moto_sqs``,
then ask for ``moto_sqs`` as usual. Every fixture works from a clean environment:
the developer's AWS configuration, credentials and secrets files are hidden.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DUMMY_ACCESS_KEY = "AKIDTESTTESTTESTTEST"
DUMMY_SECRET_KEY = "test-secret-key-not-real"
REGION = "us-east-1"

_names = itertools.count()


def _dead_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_queue_name(prefix: str = "tq", fifo: bool = False) -> str:
    """A queue name no other test uses (moto server state lives for the session)."""
    name = f"{prefix}-{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
    return name + ".fifo" if fifo else name


_MOTO_LOCK = threading.RLock()


def serialize_moto_sqs() -> Callable[[], None]:
    """Make moto's SQS receive, delete and visibility changes atomic; return an undo.

    moto checks a message's visibility and marks it received in two steps without a
    lock, so two threads receiving at once can both get the same message (seen
    about once in 15 runs of the contract's concurrent-receivers test). Real SQS
    does not do that within a lease. Long polling still waits outside the lock.
    """
    from moto.sqs.models import SQSBackend as MotoSQS

    originals = {
        name: getattr(MotoSQS, name)
        for name in ("receive_message", "delete_message", "change_message_visibility")
    }
    receive = originals["receive_message"]

    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with _MOTO_LOCK:
                found = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self.get_queue(queue_name).wait_for_messages(min(0.2, remaining))

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with _MOTO_LOCK:
                return method(*args, **kwargs)

        return call

    MotoSQS.receive_message = receive_message
    MotoSQS.delete_message = locked(originals["delete_message"])
    MotoSQS.change_message_visibility = locked(originals["change_message_visibility"])

    def undo() -> None:
        for name, method in originals.items():
            setattr(MotoSQS, name, method)

    return undo


@pytest.fixture(name="clean_aws_env")
def fixture_clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS settings from the machine: empty HOME and config files, no metadata service,
    and a dead HTTPS proxy so that nothing can reach the real AWS by mistake.

    Returns the temporary HOME directory.
    """
    for key in list(os.environ):
        if key.startswith("AWS_") or key == "CLOUD_VOLUME_DIR":
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # a request that would leave the machine goes to a dead proxy and fails at once
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("no_proxy", raising=False)
    return home


def set_loopback_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and region; no profile, endpoint, proxy or CA settings from the machine.

    For tests that only talk to servers on 127.0.0.1 (unlike ``clean_aws_env``,
    no dead proxy is set, so endpoint checks see no proxy at all).
    """
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_CA_BUNDLE",
        "AWS_REGION",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(name="aws_env")
def fixture_aws_env(clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment with dummy credentials and region in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return clean_aws_env


@pytest.fixture(name="moto_sqs")
def fixture_moto_sqs(aws_env: Path) -> Iterator[None]:
    """moto's in-process mock of AWS (fresh state for each test)."""
    from moto import mock_aws

    undo = serialize_moto_sqs()
    try:
        with mock_aws():
            yield
    finally:
        undo()


@pytest.fixture(name="moto_server_url", scope="session")
def fixture_moto_server_url() -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    undo = serialize_moto_sqs()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        undo()


@pytest.fixture(name="moto_server")
def fixture_moto_server(moto_server_url: str, aws_env: Path) -> str:
    """The session's moto server URL, with dummy credentials in a clean environment."""
    return moto_server_url
