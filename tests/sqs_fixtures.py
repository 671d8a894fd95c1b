"""Pytest fixtures for SQS tests: moto in-process and a moto server over real HTTP.

Use from a test module with ``pytest_plugins = ["tests.sqs_fixtures"]`` or by
importing the fixtures by name. Every fixture works from a clean environment:
the developer's AWS configuration, credentials and secrets files are hidden.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DUMMY_ACCESS_KEY = "AKIDTESTTESTTESTTEST"
DUMMY_SECRET_KEY = "test-secret-key-not-real"
REGION = "us-east-1"

_names = itertools.count()


def unique_queue_name(prefix: str = "tq", fifo: bool = False) -> str:
    """A queue name no other test uses (moto server state lives for the session)."""
    name = f"{prefix}-{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
    return name + ".fifo" if fifo else name


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS settings from the machine: empty HOME and config files, no metadata service.

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
    return home


@pytest.fixture
def aws_env(clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment with dummy credentials and region in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return clean_aws_env


@pytest.fixture
def moto_sqs(aws_env: Path) -> Iterator[None]:
    """moto's in-process mock of AWS (fresh state for each test)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_server(moto_server_url: str, aws_env: Path) -> str:
    """The session's moto server URL, with dummy credentials in a clean environment."""
    return moto_server_url
