"""Where an SQS queue lives and how to sign for it: URL, region, endpoint, credentials.

Shared by the boto3 backend (:mod:`.sqs`) and the fast upload engine
(:mod:`.sqs_fast`), so both talk to the same queue with the same identity.

Resolution order:

* **queue**: ``sqs://name`` (URL looked up later with GetQueueUrl), a full AWS
  queue URL ``https://sqs.<region>.amazonaws.com/<account>/<name>`` (region taken
  from the host), or any other ``http(s)://host[:port]/<account>/<name>`` URL of an
  emulator (endpoint taken from the URL). ``sqs://https://...`` is accepted too,
  as python-task-queue does.
* **region**: the ``region`` option, the AWS host of the queue URL,
  ``AWS_REGION``, botocore's configuration (``AWS_DEFAULT_REGION``, the profile
  in ``~/.aws/config``), the secrets file below, then ``us-east-1``.
* **endpoint**: the ``endpoint_url`` option, an emulator's queue URL, botocore's
  configuration (``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL``, ``endpoint_url``
  in the profile), then AWS's regional endpoint. Plain ``http://`` to a host that
  is not loopback is refused unless ``allow_insecure_http`` is set.
* **credentials**: botocore's standard chain (environment with session token,
  profile, SSO, assume-role, container and instance roles; refreshable
  credentials stay refreshable). When it finds nothing, the python-task-queue /
  CloudVolume secrets file ``aws-secret.json`` is read (see
  :func:`secret_file_candidates`), session token included.

Nothing here logs or formats credential values.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

    from botocore.credentials import ReadOnlyCredentials
    from botocore.session import Session

__all__ = [
    "DEFAULT_REGION",
    "AwsSettings",
    "AwsTarget",
    "EnvironmentCredentials",
    "QueueAddress",
    "SecretFile",
    "check_endpoint",
    "environment_target",
    "is_loopback_host",
    "load_secret_file",
    "make_session",
    "parse_queue_url",
    "proxy_for",
    "resolve_settings",
    "secret_file_candidates",
]

DEFAULT_REGION = "us-east-1"
"""python-task-queue's region when nothing else names one."""

SECRET_FILE_NAME = "aws-secret.json"
CLOUD_VOLUME_DIR_ENV = "CLOUD_VOLUME_DIR"

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_AWS_HOSTS = (
    re.compile(r"^sqs(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"),
    re.compile(r"^([a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?$"),
)


@dataclass(frozen=True, slots=True)
class QueueAddress:
    """What a queue URL says by itself, before any network call."""

    name: str
    queue_url: str | None = None
    """The full queue URL, or None for ``sqs://name`` (looked up with GetQueueUrl)."""
    region: str | None = None
    """The region of an AWS queue URL's host."""
    endpoint_url: str | None = None
    """``scheme://host[:port]`` of a non-AWS (emulator) queue URL."""

    @property
    def fifo(self) -> bool:
        """True for FIFO queues (name ends in ``.fifo``)."""
        return self.name.endswith(".fifo")


def parse_queue_url(url: str) -> QueueAddress:
    """Split an SQS queue URL; raise ConfigurationError if it names no valid queue."""
    rest = url[len("sqs://") :] if url.lower().startswith("sqs://") else url
    if "://" not in rest:
        return QueueAddress(name=_valid_name(rest.strip("/"), url))
    parts = urlsplit(rest)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"not an SQS queue URL: {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 2:
        raise ConfigurationError(
            f"SQS queue URL {url!r} must look like {parts.scheme}://host/<account>/<name>"
        )
    name = _valid_name(segments[1], url)
    queue_url = f"{parts.scheme.lower()}://{parts.netloc}/{segments[0]}/{name}"
    host = parts.hostname.lower()
    for pattern in _AWS_HOSTS:
        match = pattern.match(host)
        if match:
            return QueueAddress(name=name, queue_url=queue_url, region=match.group(1))
    if host in ("queue.amazonaws.com", "sqs.amazonaws.com"):
        return QueueAddress(name=name, queue_url=queue_url, region=DEFAULT_REGION)
    endpoint = f"{parts.scheme.lower()}://{parts.netloc}"
    return QueueAddress(name=name, queue_url=queue_url, endpoint_url=endpoint)


def _valid_name(name: str, url: str) -> str:
    if not _QUEUE_NAME.match(name):
        raise ConfigurationError(
            f"invalid SQS queue name {name!r} in {url!r}: use 1-80 letters, digits, '-' or '_'"
            " (FIFO queues end in '.fifo')"
        )
    return name


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, allow_insecure_http: bool, what: str = "endpoint") -> None:
    """Refuse plain ``http://`` to a non-loopback host unless explicitly allowed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"SQS {what} {url!r} must be an http:// or https:// URL with a host")
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// SQS {what} {url!r}: requests would be sent unencrypted to a "
            "host that is not loopback; use https:// or pass allow_insecure_http=True"
        )


@dataclass(frozen=True, slots=True)
class SecretFile:
    """Credentials read from a python-task-queue / CloudVolume ``aws-secret.json``."""

    path: Path
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    region: str | None = None


def secret_file_candidates() -> list[Path]:
    """Where ``aws-secret.json`` is looked for, first match wins.

    ``$CLOUD_VOLUME_DIR`` (if set: the file in it, or in its ``secrets/``), then
    python-task-queue's places: ``~/.cloudvolume/secrets/``, ``/`` and
    ``~/.cloudfiles/secrets/``. ``~`` follows ``HOME``.
    """
    from pathlib import Path  # only when credentials are looked for there (~2 ms of every import)

    paths: list[Path] = []
    override = os.environ.get(CLOUD_VOLUME_DIR_ENV)
    if override:
        base = Path(override).expanduser()
        paths += [base / SECRET_FILE_NAME, base / "secrets" / SECRET_FILE_NAME]
    home = Path(os.path.expanduser("~"))
    paths += [
        home / ".cloudvolume" / "secrets" / SECRET_FILE_NAME,
        Path("/") / SECRET_FILE_NAME,
        home / ".cloudfiles" / "secrets" / SECRET_FILE_NAME,
    ]
    return paths


def load_secret_file() -> SecretFile | None:
    """Read the first ``aws-secret.json`` found, or None if there is none."""
    path = next((p for p in secret_file_candidates() if p.is_file()), None)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot read AWS secrets file {path}: {type(e).__name__}") from e
    if not isinstance(data, dict):
        raise ConfigurationError(f"AWS secrets file {path} must hold a JSON object")
    access, secret = data.get("AWS_ACCESS_KEY_ID"), data.get("AWS_SECRET_ACCESS_KEY")
    if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
        raise ConfigurationError(
            f"AWS secrets file {path} needs string keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    token, region = data.get("AWS_SESSION_TOKEN"), data.get("AWS_DEFAULT_REGION")
    return SecretFile(
        path=path,
        access_key=access,
        secret_key=secret,
        token=token if isinstance(token, str) and token else None,
        region=region if isinstance(region, str) and region else None,
    )


def make_session(profile: str | None = None) -> tuple[Session, SecretFile | None]:
    """A botocore session with credentials, falling back to the secrets file.

    Returns the session and the secrets file if it was used. Raises
    ConfigurationError when no credentials can be found anywhere.
    """
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=profile)
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as e:  # unknown profile, broken config, failed SSO...
        raise ConfigurationError(f"AWS configuration error: {e}") from e
    if credentials is not None:
        return session, None
    secret = load_secret_file()
    if secret is None:
        raise ConfigurationError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an "
            f"instance role, or write {SECRET_FILE_NAME} under ~/.cloudvolume/secrets/"
        )
    session.set_credentials(secret.access_key, secret.secret_key, secret.token)
    return session, secret


def _configured_region(session: Session) -> str | None:
    region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    return region if isinstance(region, str) and region else None


@dataclass(frozen=True)
class AwsSettings:
    """Everything needed to build an SQS client for one queue URL and its options."""

    address: QueueAddress
    region: str
    endpoint_url: str | None
    """Explicit endpoint (option or emulator URL); None lets botocore decide."""
    session: Session = field(repr=False, compare=False)
    allow_insecure_http: bool = False

    def create_client(
        self, *, max_pool_connections: int = 32, retry_mode: str = "standard", max_attempts: int = 5
    ) -> Any:
        """A new botocore SQS client (thread-safe); its endpoint is checked for plain http.

        ``max_attempts`` counts every try (1: no retries), like ``AWS_MAX_ATTEMPTS``.
        """
        from botocore.config import Config

        mode = cast('Literal["legacy", "standard", "adaptive"]', retry_mode)
        config = Config(
            retries={"mode": mode, "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            tcp_keepalive=True,
        )
        client = self.session.create_client(
            "sqs", region_name=self.region, endpoint_url=self.endpoint_url, config=config
        )
        check_endpoint(client.meta.endpoint_url, self.allow_insecure_http)
        return client

    def target(self, queue_url: str, endpoint_url: str) -> AwsTarget:
        """The resolved target once the queue URL and the client's endpoint are known."""
        ca_bundle = self.session.get_config_variable("ca_bundle")
        return AwsTarget(
            queue_url=queue_url,
            queue_name=self.address.name,
            region=self.region,
            endpoint_url=endpoint_url,
            session=self.session,
            ca_bundle=ca_bundle if isinstance(ca_bundle, str) and ca_bundle else None,
        )


def resolve_settings(
    url: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    allow_insecure_http: bool = False,
) -> AwsSettings:
    """Resolve region, endpoint and credentials for ``url`` (no network call to SQS).

    May contact the instance metadata service while botocore looks for credentials.
    """
    address = parse_queue_url(url)
    if address.queue_url is not None:
        check_endpoint(address.queue_url, allow_insecure_http, what="queue URL")
    if endpoint_url is not None:
        check_endpoint(endpoint_url, allow_insecure_http)
    session, secret = make_session(profile)
    chosen = (
        region
        or address.region
        or _configured_region(session)
        or (secret.region if secret else None)
        or DEFAULT_REGION
    )
    return AwsSettings(
        address=address,
        region=chosen,
        endpoint_url=endpoint_url or address.endpoint_url,
        session=session,
        allow_insecure_http=allow_insecure_http,
    )


@dataclass(frozen=True)
class AwsTarget:
    """A resolved SQS queue: where to send requests and how to sign them.

    Built by :attr:`tq_orchestrate.backends.sqs.SQSBackend.target`. Credentials
    are never stored here: call :meth:`frozen_credentials` before each signing
    (refreshable credentials renew themselves).
    """

    queue_url: str
    queue_name: str
    region: str
    endpoint_url: str
    """``scheme://host[:port]`` the requests go to (AWS JSON 1.0, ``POST /``)."""
    session: Session | None = field(repr=False, compare=False)
    """The botocore session whose credentials sign requests (None: ``credentials``)."""
    ca_bundle: str | None = None
    """A CA bundle path from ``AWS_CA_BUNDLE`` / the profile, for TLS verification."""
    credentials: EnvironmentCredentials | None = field(default=None, repr=False, compare=False)
    """Static credentials read from the environment, used when ``session`` is None."""

    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
        return urlsplit(self.endpoint_url).scheme.lower()

    @property
    def hostname(self) -> str:
        """The host to connect to, without port."""
        return urlsplit(self.endpoint_url).hostname or ""

    @property
    def port(self) -> int:
        """The port to connect to (443/80 by default)."""
        parts = urlsplit(self.endpoint_url)
        return parts.port or (443 if parts.scheme.lower() == "https" else 80)

    @property
    def host_header(self) -> str:
        """The ``Host`` header value, as botocore signs it (no default port)."""
        parts = urlsplit(self.endpoint_url)
        default = 443 if parts.scheme.lower() == "https" else 80
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return host if parts.port in (None, default) else f"{host}:{parts.port}"

    @property
    def path(self) -> str:
        """The request path of the endpoint (``/`` unless the endpoint URL has one)."""
        return urlsplit(self.endpoint_url).path or "/"

    @property
    def fifo(self) -> bool:
        """True for FIFO queues."""
        return self.queue_name.endswith(".fifo")

    def frozen_credentials(self) -> ReadOnlyCredentials | EnvironmentCredentials:
        """The current credentials (access key, secret key, token), refreshed if due."""
        if self.session is None:
            if self.credentials is None:
                raise ConfigurationError("no AWS credentials available for SQS")
            return self.credentials
        credentials = self.session.get_credentials()
        if credentials is None:
            raise ConfigurationError("no AWS credentials available for SQS")
        return credentials.get_frozen_credentials()


# -- the environment alone ----------------------------------------------------------

_CREDENTIAL_FILES = (
    ("AWS_CONFIG_FILE", "~/.aws/config"),
    ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
)
_BOTOCORE_ONLY_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)
"""Set, any of these asks for botocore's own reading of the configuration."""
_REGION_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")
"""botocore's check of a region name."""
_COMMERCIAL_REGION = re.compile(r"^(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]+$")
"""Regions of the ``aws`` partition, whose SQS endpoint is ``https://sqs.<region>.amazonaws.com``."""


@dataclass(frozen=True, slots=True)
class EnvironmentCredentials:
    """Static credentials from ``AWS_ACCESS_KEY_ID`` & co. (botocore's names for them)."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def environment_target(
    address: QueueAddress,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    allow_insecure_http: bool = False,
) -> AwsTarget | None:
    """The target botocore would resolve, when the environment alone decides it; else None.

    Importing botocore and building a client cost about 150 ms, most of a small
    upload. This answers without botocore only where botocore's answer is
    certain: credentials in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    (botocore's first provider; not expiring), no ``profile``, no AWS config
    or shared credentials file with content (they could name a region, an
    endpoint or a CA bundle), and none of :data:`_BOTOCORE_ONLY_ENV`. The
    endpoint is the ``endpoint_url`` option, an emulator's queue URL,
    ``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL``, or a commercial region's
    ``https://sqs.<region>.amazonaws.com``; anything else (China, GovCloud, ISO
    regions) is left to botocore. The queue URL is left empty: the caller
    fills it in.
    """
    credentials = _environment_credentials()
    if profile is not None or credentials is None or not _nothing_else_configured():
        return None
    chosen = region or address.region or _env("AWS_REGION") or _env("AWS_DEFAULT_REGION") or DEFAULT_REGION
    if not _REGION_NAME.match(chosen):
        return None  # botocore's error for it
    endpoint = (
        endpoint_url
        or address.endpoint_url
        or _env("AWS_ENDPOINT_URL_SQS")
        or _env("AWS_ENDPOINT_URL")
        or (f"https://sqs.{chosen}.amazonaws.com" if _COMMERCIAL_REGION.match(chosen) else None)
    )
    if endpoint is None:
        return None
    check_endpoint(endpoint, allow_insecure_http)
    return AwsTarget(
        queue_url="",
        queue_name=address.name,
        region=chosen,
        endpoint_url=endpoint,
        session=None,
        ca_bundle=_env("AWS_CA_BUNDLE"),
        credentials=credentials,
    )


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _environment_credentials() -> EnvironmentCredentials | None:
    access, secret = _env("AWS_ACCESS_KEY_ID"), _env("AWS_SECRET_ACCESS_KEY")
    if access is None or secret is None:
        return None
    token = _env("AWS_SECURITY_TOKEN") or _env("AWS_SESSION_TOKEN")  # botocore's order
    return EnvironmentCredentials(access, secret, token)


def _nothing_else_configured() -> bool:
    """No variable that botocore reads beyond ours is set, and its files are empty or absent."""
    if any(name in os.environ for name in _BOTOCORE_ONLY_ENV):
        return False
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        if name in os.environ and not os.environ[name]:
            return False  # set but empty: botocore's reading of it decides
    for variable, default in _CREDENTIAL_FILES:
        path = os.path.expanduser(os.environ.get(variable) or default)
        try:
            if os.path.getsize(path) > 0:
                return False
        except OSError:  # absent
            continue
    return True


_SYSTEM_PROXIES = ("darwin", "win32")
"""Platforms where urllib also reads proxies from the system's settings."""


def proxy_for(url: str) -> bool:
    """True when the environment configures an HTTP(S) proxy for ``url``."""
    if (
        not any(name.lower().endswith("_proxy") for name in os.environ)
        and sys.platform not in _SYSTEM_PROXIES
    ):
        return False  # what urllib.request.getproxies() says here, without importing it
    import urllib.request

    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(host)
