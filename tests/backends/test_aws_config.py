"""Where the SQS backend gets credentials, region and endpoint, and that options survive pickling."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.sqs_fixtures import (  # noqa: F401 - fixtures used by name
    DUMMY_ACCESS_KEY,
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    fixture_moto_sqs,
    unique_queue_name,
)
from tq_orchestrate.backends._aws import resolve_settings, secret_file_candidates
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.errors import ConfigurationError

AWS_URL = "https://sqs.eu-central-1.amazonaws.com/123456789012/jobs"
LOCAL_URL = "http://127.0.0.1:9/000000000000/jobs"
"""A queue URL that needs no lookup (nothing listens there; these tests send nothing)."""


def write_secret(directory: Path, **values: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "aws-secret.json"
    path.write_text(json.dumps(values))
    return path


def capture_headers(backend: SQSBackend) -> list[dict[str, str]]:
    """Record the headers of every request the backend's client sends."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append(
            {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        )

    backend.client.meta.events.register("before-send.sqs", record)
    return seen


# -- credentials ----------------------------------------------------------------------


def test_environment_credentials_with_session_token_are_sent(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-from-env")
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", endpoint_url=moto_server, create=True)
    frozen = backend.target.frozen_credentials()
    assert (frozen.access_key, frozen.token) == (DUMMY_ACCESS_KEY, "session-token-from-env")
    headers = capture_headers(backend)
    assert backend.send_batch(["hello"]) == []
    (sent,) = headers
    assert sent["x-amz-security-token"] == "session-token-from-env"
    assert f"Credential={DUMMY_ACCESS_KEY}/" in sent["authorization"]


def test_profile_credentials_and_region_from_config_file(
    clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_aws_env / "aws-config").write_text(
        "[default]\nregion = us-west-2\n\n"
        "[profile work]\nregion = ap-southeast-2\naws_access_key_id = AKIDPROFILE\n"
        "aws_secret_access_key = profile-secret\n"
    )
    settings = resolve_settings("sqs://q", profile="work")
    assert settings.region == "ap-southeast-2"
    assert settings.session.get_credentials().get_frozen_credentials().access_key == "AKIDPROFILE"
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert resolve_settings("sqs://q").region == "ap-southeast-2"
    backend = SQSBackend.from_url(LOCAL_URL, profile="work")
    assert backend.target.region == "ap-southeast-2"


def test_unknown_profile_is_a_configuration_error(clean_aws_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="nope"):
        resolve_settings("sqs://q", profile="nope")


def test_refreshable_credentials_are_never_frozen(clean_aws_env: Path) -> None:
    """A credential_process that hands out short-lived keys is asked again when they expire."""
    script = clean_aws_env / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"counter = pathlib.Path({str(clean_aws_env / 'count')!r})\n"
        "n = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(n))\n"
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'AKIDROTATING{n}', 'SecretAccessKey': 's',\n"
        "                  'SessionToken': f'token-{n}', 'Expiration': expires.isoformat()}))\n"
    )
    (clean_aws_env / "aws-config").write_text(
        f"[profile rotating]\ncredential_process = {sys.executable} {script}\nregion = eu-north-1\n"
    )
    target = SQSBackend.from_url(AWS_URL, profile="rotating").target
    first = target.frozen_credentials()
    second = target.frozen_credentials()
    assert first.token is not None and second.token is not None
    assert first.token != second.token  # expiring within botocore's refresh window: fetched again
    assert int(second.token.split("-")[1]) > int(first.token.split("-")[1])


def test_no_credentials_anywhere_is_a_clear_error(clean_aws_env: Path) -> None:
    backend = SQSBackend.from_url("sqs://q")
    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        backend.counts()


# -- the python-task-queue / CloudVolume secrets file ---------------------------------


def test_secrets_file_is_used_when_the_chain_finds_nothing(clean_aws_env: Path) -> None:
    write_secret(
        clean_aws_env / ".cloudvolume" / "secrets",
        AWS_ACCESS_KEY_ID="AKIDFROMFILE",
        AWS_SECRET_ACCESS_KEY="file-secret",
        AWS_SESSION_TOKEN="file-token",
        AWS_DEFAULT_REGION="sa-east-1",
    )
    target = SQSBackend.from_url(LOCAL_URL).target
    frozen = target.frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "AKIDFROMFILE",
        "file-secret",
        "file-token",
    )
    assert target.region == "sa-east-1"


def test_secrets_file_sends_its_session_token(
    moto_server: str, clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key)
    write_secret(
        clean_aws_env / ".cloudvolume" / "secrets",
        AWS_ACCESS_KEY_ID="AKIDFROMFILE",
        AWS_SECRET_ACCESS_KEY="file-secret",
        AWS_SESSION_TOKEN="file-token",
    )
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", endpoint_url=moto_server, create=True)
    headers = capture_headers(backend)
    assert backend.send_batch(["x"]) == []
    assert headers[0]["x-amz-security-token"] == "file-token"
    assert "Credential=AKIDFROMFILE/" in headers[0]["authorization"]
    assert backend.target.region == "us-east-1"  # python-task-queue's default


def test_standard_chain_wins_over_the_secrets_file(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_secret(
        aws_env / ".cloudvolume" / "secrets",
        AWS_ACCESS_KEY_ID="AKIDFROMFILE",
        AWS_SECRET_ACCESS_KEY="file-secret",
        AWS_DEFAULT_REGION="sa-east-1",
    )
    target = SQSBackend.from_url(LOCAL_URL).target
    assert target.frozen_credentials().access_key == DUMMY_ACCESS_KEY
    assert target.region == "us-east-1"  # from AWS_DEFAULT_REGION, not the unused file


@pytest.mark.parametrize("layout", ["flat", "secrets-subdirectory"])
def test_cloud_volume_dir_overrides_the_location(
    clean_aws_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    base = tmp_path / "cv"
    write_secret(
        base if layout == "flat" else base / "secrets", AWS_ACCESS_KEY_ID="AKIDCV", AWS_SECRET_ACCESS_KEY="s"
    )
    write_secret(
        clean_aws_env / ".cloudvolume" / "secrets", AWS_ACCESS_KEY_ID="AKIDHOME", AWS_SECRET_ACCESS_KEY="s"
    )
    monkeypatch.setenv("CLOUD_VOLUME_DIR", str(base))
    assert secret_file_candidates()[0] == base / "aws-secret.json"
    frozen = resolve_settings("sqs://q").session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.token) == ("AKIDCV", None)


def test_cloudfiles_location_is_a_fallback(clean_aws_env: Path) -> None:
    write_secret(
        clean_aws_env / ".cloudfiles" / "secrets", AWS_ACCESS_KEY_ID="AKIDCF", AWS_SECRET_ACCESS_KEY="s"
    )
    frozen = resolve_settings("sqs://q").session.get_credentials().get_frozen_credentials()
    assert frozen.access_key == "AKIDCF"


@pytest.mark.parametrize(
    "content",
    ['{"AWS_ACCESS_KEY_ID": "AKIDBROKEN"', '["list"]', '{"AWS_ACCESS_KEY_ID": "AKIDBROKEN"}'],
)
def test_broken_secrets_file_is_named_without_its_contents(clean_aws_env: Path, content: str) -> None:
    directory = clean_aws_env / ".cloudvolume" / "secrets"
    directory.mkdir(parents=True)
    (directory / "aws-secret.json").write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings("sqs://q")
    assert "aws-secret.json" in str(caught.value)
    assert "AKIDBROKEN" not in str(caught.value)


def test_secrets_never_appear_in_reprs(clean_aws_env: Path) -> None:
    write_secret(
        clean_aws_env / ".cloudvolume" / "secrets",
        AWS_ACCESS_KEY_ID="AKIDFROMFILE",
        AWS_SECRET_ACCESS_KEY="very-secret",
        AWS_SESSION_TOKEN="very-token",
    )
    from tq_orchestrate.backends._aws import load_secret_file

    backend = SQSBackend.from_url(AWS_URL)
    shown = " ".join(map(repr, [load_secret_file(), backend.target, resolve_settings(AWS_URL), backend]))
    for secret in ("very-secret", "very-token", "AKIDFROMFILE"):
        assert secret not in shown


# -- region and endpoint ---------------------------------------------------------------


def test_region_sources_in_order(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings("sqs://q").region == "us-east-1"  # AWS_DEFAULT_REGION from the fixture
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert resolve_settings("sqs://q").region == "eu-west-3"  # AWS_REGION beats AWS_DEFAULT_REGION
    assert resolve_settings(AWS_URL).region == "eu-central-1"  # the queue URL's host beats both
    assert resolve_settings(AWS_URL, region="us-west-1").region == "us-west-1"  # the option beats all
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert resolve_settings("sqs://q").region == "us-east-1"  # python-task-queue's default


def test_region_reaches_the_queue_url(moto_sqs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True)
    assert backend.target.region == "eu-west-3"
    assert backend.queue_url.startswith("https://sqs.eu-west-3.amazonaws.com/")


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"])
def test_endpoint_from_environment(moto_server: str, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, moto_server)
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True)
    assert backend.target.endpoint_url == moto_server
    assert backend.queue_url.startswith(moto_server)
    assert backend.send_batch(["via env"]) == []
    assert [m.body for m in backend.receive(1, 30)] == ["via env"]


def test_endpoint_option_beats_environment(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", endpoint_url=moto_server, create=True)
    assert backend.target.endpoint_url == moto_server


def test_emulator_queue_url_is_its_own_endpoint(moto_server: str) -> None:
    name = unique_queue_name()
    queue_url = SQSBackend.from_url(f"sqs://{name}", endpoint_url=moto_server, create=True).queue_url
    backend = SQSBackend.from_url(queue_url)
    target = backend.target
    assert (target.endpoint_url, target.queue_url, target.queue_name) == (moto_server, queue_url, name)
    assert (target.scheme, target.hostname) == ("http", "127.0.0.1")
    assert target.host_header == f"127.0.0.1:{target.port}"
    assert backend.send_batch(["direct"]) == []


def test_aws_target_for_a_real_aws_url(aws_env: Path) -> None:
    target = SQSBackend.from_url(AWS_URL).target
    assert target.endpoint_url == "https://sqs.eu-central-1.amazonaws.com"
    assert (target.scheme, target.port, target.host_header, target.path) == (
        "https",
        443,
        "sqs.eu-central-1.amazonaws.com",
        "/",
    )
    assert not target.fifo


# -- pickling: a backend is its URL and options ---------------------------------------


def test_options_survive_pickling(aws_env: Path) -> None:
    backend = SQSBackend.from_url(
        "http://127.0.0.1:9324/000000000000/jobs.fifo",
        region="eu-west-1",
        engine="boto3",
        message_group_id="g",
        max_attempts=2,
    )
    assert backend.target.region == "eu-west-1"  # connected: the clone must not carry the client
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.url, clone.options) == (backend.url, backend.options)
    assert clone.target.endpoint_url == "http://127.0.0.1:9324"
    assert clone.target.region == "eu-west-1"
    assert clone.client is not backend.client


def _send_from_child(backend: SQSBackend, bodies: list[str]) -> list[Any]:
    return backend.send_batch(bodies)


@pytest.mark.slow
def test_options_reach_a_spawned_process(moto_server: str) -> None:
    """Upstream loses constructor options in child processes; here the child uses endpoint_url."""
    backend = SQSBackend.from_url(f"sqs://{unique_queue_name()}", endpoint_url=moto_server, create=True)
    backend.queue_url  # noqa: B018 - create the queue in the parent
    spawn: Callable[..., Any] = multiprocessing.get_context("spawn")  # type: ignore[assignment]
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # type: ignore[arg-type]
        assert pool.submit(_send_from_child, backend, ["from the child"]).result(timeout=60) == []
    assert [m.body for m in backend.receive(1, 30)] == ["from the child"]


# -- without botocore: what the environment alone decides --------------------------------


def _botocore_answer(url: str, **options: Any) -> tuple[str, str]:
    settings = resolve_settings(url, **options)
    client = settings.create_client()
    try:
        return settings.region, client.meta.endpoint_url
    finally:
        client.close()


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, {}),
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, {}),
        ({"AWS_REGION": "ap-southeast-2"}, {}),
        ({"AWS_DEFAULT_REGION": "sa-east-1"}, {"region": "us-west-2"}),
        ({"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9324"}, {}),
        ({"AWS_ENDPOINT_URL": "http://localhost:4566"}, {}),
        ({"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1"}, {"endpoint_url": "http://127.0.0.1:2"}),
        ({"AWS_SESSION_TOKEN": "token-from-env"}, {}),
    ],
)
def test_environment_target_is_what_botocore_resolves(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], options: dict[str, Any]
) -> None:
    from tq_orchestrate.backends._aws import environment_target, parse_queue_url

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for url in ("sqs://jobs", AWS_URL):
        found = environment_target(parse_queue_url(url), **options)
        assert found is not None
        assert (found.region, found.endpoint_url) == _botocore_answer(url, **options)
        frozen = resolve_settings(url).session.get_credentials().get_frozen_credentials()
        mine = found.frozen_credentials()
        assert (mine.access_key, mine.secret_key, mine.token) == tuple(frozen)[:3]


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({"AWS_PROFILE": "other"}, {}),
        ({}, {"profile": "other"}),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, {}),
        ({"AWS_DEFAULT_REGION": "cn-north-1"}, {}),
        ({"AWS_DEFAULT_REGION": "us-gov-west-1"}, {}),
        ({"AWS_CREDENTIAL_EXPIRATION": "2030-01-01T00:00:00Z"}, {}),
        ({"AWS_ACCESS_KEY_ID": ""}, {}),
        ({"AWS_ENDPOINT_URL_SQS": ""}, {}),
    ],
)
def test_environment_target_leaves_the_rest_to_botocore(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], options: dict[str, Any]
) -> None:
    from tq_orchestrate.backends._aws import environment_target, parse_queue_url

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert environment_target(parse_queue_url("sqs://jobs"), **options) is None


@pytest.mark.parametrize("kind", ["config", "credentials"])
def test_an_aws_file_with_content_leaves_it_to_botocore(aws_env: Path, kind: str) -> None:
    from tq_orchestrate.backends._aws import environment_target, parse_queue_url

    (aws_env / f"aws-{kind}").write_text("[default]\nregion = eu-west-1\n")
    assert environment_target(parse_queue_url("sqs://jobs")) is None


def test_fast_upload_from_the_environment_imports_no_botocore(aws_env: Path) -> None:
    """GetQueueUrl and the upload go through the fast engine; the queue URL is botocore's."""
    from tq_orchestrate.testing.sqs_server import SqsStandIn

    code = (
        "import sys\n"
        "from tq_orchestrate import PrintTask, TaskQueue\n"
        "q = TaskQueue('sqs://jobs', progress=False)\n"
        "assert q.insert_all([PrintTask(str(i)) for i in range(25)]) == 25\n"
        "assert 'botocore' not in sys.modules, 'botocore imported'\n"
        "print(q.backend.target.queue_url)\n"
    )
    with SqsStandIn() as server:
        expected = server.create_queue("jobs")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["AWS_ENDPOINT_URL_SQS"] = server.endpoint_url
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
        assert len(server.bodies("jobs")) == 25
