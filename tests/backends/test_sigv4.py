"""The hand-written SigV4 signer matches botocore's SigV4Auth byte for byte."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from tq_orchestrate.backends._sigv4 import FrozenCredentials, SigV4Signer, amz_date

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET = "AmazonSQS.SendMessageBatch"


def botocore_headers(
    url: str, body: bytes, creds: FrozenCredentials, region: str, when: datetime.datetime
) -> dict[str, str]:
    """Sign with botocore at a fixed time and return the headers it set."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
    )
    auth = SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token), "sqs", region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        auth.add_auth(request)
    return {k: v for k, v in request.headers.items() if k not in ("Content-Type", "X-Amz-Target")}


def ours(
    host: str, body: bytes, creds: FrozenCredentials, region: str, when: datetime.datetime
) -> dict[str, str]:
    signer = SigV4Signer(service="sqs", region=region, host=host)
    stamp = amz_date(when.replace(tzinfo=datetime.timezone.utc).timestamp())
    return dict(
        signer.sign(body=body, content_type=CONTENT_TYPE, target=TARGET, credentials=creds, timestamp=stamp)
    )


WHEN = datetime.datetime(2024, 2, 29, 23, 59, 58)
BODY = b'{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/q","Entries":[]}'


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBAaDH+session/token=="])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://sqs.us-east-1.amazonaws.com/", "sqs.us-east-1.amazonaws.com"),
        ("https://sqs.eu-west-1.amazonaws.com:443/", "sqs.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566"),
    ],
)
def test_matches_botocore(url: str, host: str, token: str | None) -> None:
    creds = FrozenCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    expected = botocore_headers(url, BODY, creds, "us-east-1", WHEN)
    got = ours(host, BODY, creds, "us-east-1", WHEN)
    assert got == expected
    assert ("X-Amz-Security-Token" in got) == (token is not None)
    assert got["X-Amz-Date"] == "20240229T235958Z"


def test_signing_key_is_cached_per_day_and_secret() -> None:
    signer = SigV4Signer(service="sqs", region="us-west-2", host="h")
    k1 = signer.signing_key("secret", "20240101")
    assert signer.signing_key("secret", "20240101") is k1
    assert signer.signing_key("secret", "20240102") != k1
    assert signer.signing_key("other", "20240102") != signer.signing_key("secret", "20240102")


def test_rotated_credentials_change_signature() -> None:
    signer = SigV4Signer(service="sqs", region="us-east-1", host="h")
    stamp = "20240101T000000Z"
    a = dict(
        signer.sign(
            body=BODY,
            content_type=CONTENT_TYPE,
            target=TARGET,
            credentials=FrozenCredentials("AK", "one", "t1"),
            timestamp=stamp,
        )
    )
    b = dict(
        signer.sign(
            body=BODY,
            content_type=CONTENT_TYPE,
            target=TARGET,
            credentials=FrozenCredentials("AK", "two", "t2"),
            timestamp=stamp,
        )
    )
    assert a["Authorization"] != b["Authorization"]
    assert b["X-Amz-Security-Token"] == "t2"


@settings(max_examples=60, deadline=None)
@given(
    body=st.text().map(lambda s: s.encode()),
    secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    token=st.none() | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    region=st.sampled_from(["us-east-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"]),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_matches_botocore_for_any_body(
    body: bytes, secret: str, token: str | None, region: str, seconds: int
) -> None:
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
    creds = FrozenCredentials("ASIAEXAMPLE", secret, token)
    url = f"https://sqs.{region}.amazonaws.com/"
    host = f"sqs.{region}.amazonaws.com"
    assert ours(host, body, creds, region, when) == botocore_headers(url, body, creds, region, when)
