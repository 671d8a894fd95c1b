"""The backend contract against SQS: moto in-process, and a moto server over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from tests.backends.contract import BackendContract
from tests.sqs_fixtures import (  # noqa: F401 - fixtures used by name
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    fixture_moto_sqs,
    unique_queue_name,
)
from tq_orchestrate.backends.sqs import SQSBackend


class SQSContract(BackendContract):
    """SQS specifics: leased messages cannot be listed, so release_all is refused;
    a receipt handle from an earlier receive may still delete the message (SQS
    documents that DeleteMessage with an old handle can succeed; moto deletes)."""

    supports_release_all: ClassVar[bool] = False
    # Not SQS properties: an old receipt handle may still delete, and counts are
    # approximate with no totals. Setting the tests to None leaves them uncollected.
    test_stale_handle_cannot_delete_or_renew = None  # type: ignore[assignment]
    test_totals_add_up = None  # type: ignore[assignment]


class TestSQSMotoInProcess(SQSContract):
    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Iterator[SQSBackend]:
        request.getfixturevalue("moto_sqs")
        b = SQSBackend.from_url(f"sqs://{unique_queue_name()}", create=True, max_receives=self.max_receives)
        assert b.call_engine == "boto3"  # moto's in-process mock only sees botocore
        yield b
        b.close()


@pytest.mark.slow
class TestSQSMotoServer(SQSContract):
    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Iterator[SQSBackend]:
        b = SQSBackend.from_url(
            f"sqs://{unique_queue_name()}",
            endpoint_url=request.getfixturevalue("moto_server"),
            create=True,
            max_receives=self.max_receives,
        )
        assert b.call_engine == "fast"  # engine="auto": receive, delete and change_lease skip botocore
        yield b
        b.close()
