"""Signed HTTP for ingest's hot path: SigV4 over the standard library, without a botocore client.

A POST makes at most four outside calls: the rate limiter's `UpdateItem`, Firehose's
`PutRecordBatch`, OpenSearch's `_bulk` and the alarm table's `BatchGetItem`. Building a botocore
session and client for them, and importing opensearch-py (which imports requests), was most of a
cold start (docs/decision_log.md, issue 14). Here they go out as plain HTTPS requests:

- `sign` is AWS Signature Version 4 written with hashlib/hmac: importing botocore's signer
  (`botocore.auth` + `botocore.credentials`) measured 50-90 ms on a cold start, as much as the
  rest of the hot path. tests/unit/test_signed_http.py checks it against botocore's own signer.
- `AwsJsonClient` speaks the AWS JSON protocol (DynamoDB, Firehose): one POST with
  `X-Amz-Target`. Its methods take and return what botocore's do, and its failures are
  botocore's exception types (`ClientError` with the service's error code, `BotoCoreError` for
  the network), so the adapters' error handling is the same whichever client they hold.
  botocore's exceptions module is imported only when a call fails.
- `SignedHttp` sends one request to a host (OpenSearch) and answers (status, JSON body).

Requests go out with http.client on one kept-alive connection per host and thread (`send`).
Retries and timeouts come from the timeout ladder (`gasmon.adapters.timeouts`), as botocore's
standard retry mode does for the clients in `gasmon.adapters.aws`: the same attempts, the same
statuses and error codes retried (throttling, 5xx, the network), the same capped backoff.
Credentials are Lambda's environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`), read per request; without them botocore's credential chain is asked.
Endpoints follow botocore's variables (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`), which
is how `make local` and the tests point them at moto's server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from gasmon.adapters.timeouts import CLIENT_BUDGETS, ClientBudget

ALGORITHM = "AWS4-HMAC-SHA256"
# botocore's standard retry mode: what it retries besides 5xx answers and network errors.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 20.0


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def current_credentials() -> Credentials:
    """Lambda's credentials from its environment; else botocore's chain (a profile, a role)."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
    from gasmon.adapters.aws import aws_credentials

    found = aws_credentials()
    if found is None:
        raise _no_credentials()
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def _no_credentials() -> Exception:
    from botocore.exceptions import NoCredentialsError

    return NoCredentialsError()


def host_header(url: str) -> str:
    """The Host a request to `url` carries: lower case, the port only when it is not the scheme's."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{host}:{parts.port}" if parts.port and parts.port != default else host


def canonical_query(params: Mapping[str, str]) -> str:
    """A query string in SigV4's canonical form (sorted, every reserved character escaped); it is
    also what gets sent, so the signed and the sent query are the same text."""
    pairs = sorted((quote(key, safe="-_.~"), quote(str(value), safe="-_.~")) for key, value in params.items())
    return "&".join(f"{key}={value}" for key, value in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    service: str,
    region: str,
    credentials: Credentials,
    now: datetime,
) -> dict[str, str]:
    """The headers to send: `headers` plus Host, X-Amz-Date, the session token and Authorization
    (AWS Signature Version 4 over every header sent, the path, the query and the body's SHA-256)."""
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    signed["host"] = host_header(url)
    signed["x-amz-date"] = amz_date
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    parts = urlsplit(url)
    names = sorted(signed)
    canonical = "\n".join(
        [
            method.upper(),
            quote(parts.path or "/", safe="/~"),
            parts.query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(("AWS4" + credentials.secret_key).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    sent = dict(headers)
    sent.update({"Host": signed["host"], "X-Amz-Date": amz_date, "Authorization": authorization})
    if credentials.token:
        sent["X-Amz-Security-Token"] = credentials.token
    return sent


class HttpConnectionError(Exception):
    """The request got no answer (connection refused or reset, DNS, a timeout)."""

    def __init__(self, url: str, reason: Exception) -> None:
        super().__init__(f"no answer from {url}: {reason}")
        self.url = url
        self.reason = reason
        self.timed_out = isinstance(reason, TimeoutError)


class _KeptAlive(threading.local):
    """Each thread's open connections by (scheme, host, port): kept alive between requests, as a
    pool would, and dropped when the server has closed them (checked before each reuse)."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, str, int], Any] = {}


_kept = _KeptAlive()
_tls_lock = threading.Lock()
_tls: Any = None


def _tls_context() -> Any:
    """One TLS context per process, trusting the CA bundle requests and botocore use."""
    global _tls
    with _tls_lock:
        if _tls is None:
            import ssl

            try:
                import certifi

                _tls = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi ships in the layer
                _tls = ssl.create_default_context()
        return _tls


def _closed_by_peer(connection: Any) -> bool:
    """True if an idle kept-alive connection can no longer be used: readable while idle means the
    server closed it (or sent what no request asked for)."""
    import select

    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def send(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float | tuple[float, float]
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection, no retries: (status, body). `timeout` is
    one deadline for connecting and answering, or (connect, read) seconds.

    The standard library's http.client, not urllib3: urllib3's import (its HTTP/2 probe reads
    package metadata) was a tenth of ingest's cold start, for a pool one connection per host fills.
    """
    import http.client

    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    key = (parts.scheme, host, port)
    connect_limit, read_limit = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    deadline = None if isinstance(timeout, tuple) else time.monotonic() + timeout
    connection = _kept.connections.pop(key, None)
    if connection is not None and _closed_by_peer(connection):
        connection.close()
        connection = None
    try:
        if connection is None:
            if https:
                connection = http.client.HTTPSConnection(host, port, timeout=connect_limit, context=_tls_context())
            else:
                connection = http.client.HTTPConnection(host, port, timeout=connect_limit)
            connection.connect()
            # As urllib3 and botocore do: a request's small writes are not held back (Nagle).
            import socket

            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remaining = read_limit if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out before the request was sent")
        connection.sock.settimeout(remaining)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target or "/", body=body, headers=dict(headers))
        answer = connection.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        if connection is not None:
            connection.close()
        raise HttpConnectionError(url, exc) from exc
    if answer.will_close:
        connection.close()
    else:
        _kept.connections[key] = connection
    return int(answer.status), data


def region_of(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def endpoint_of(service_env: str, host_prefix: str, region: str, endpoint_url: str | None = None) -> str:
    """Where a service's requests go: the explicit URL, else botocore's `AWS_ENDPOINT_URL_<SERVICE>`
    and `AWS_ENDPOINT_URL` variables, else the service's regional endpoint."""
    found = endpoint_url or os.environ.get(f"AWS_ENDPOINT_URL_{service_env}") or os.environ.get("AWS_ENDPOINT_URL")
    if found:
        return found.rstrip("/")
    return f"https://{host_prefix}.{region}.amazonaws.com"


@dataclass(frozen=True)
class JsonService:
    """What the AWS JSON protocol needs to know about one service."""

    signing_name: str  # also the endpoint's host prefix
    env_name: str  # AWS_ENDPOINT_URL_<env_name>
    target_prefix: str  # X-Amz-Target: <target_prefix>.<Operation>
    content_type: str
    budget: str  # the timeout ladder's entry


DYNAMODB = JsonService("dynamodb", "DYNAMODB", "DynamoDB_20120810", "application/x-amz-json-1.0", "dynamodb")
FIREHOSE = JsonService("firehose", "FIREHOSE", "Firehose_20150804", "application/x-amz-json-1.1", "firehose")


def _error_code(answer: Mapping[str, Any]) -> str:
    """The error code of a JSON-protocol answer (`__type` is `namespace#Code`, or just `Code`)."""
    kind = str(answer.get("__type") or answer.get("code") or answer.get("Code") or "")
    return kind.rsplit("#", 1)[-1]


class AwsJsonClient:
    """Calls of one AWS JSON-protocol service with botocore's inputs, outputs and exceptions.

    Only the operations ingest makes on its hot path are methods here; everything else stays
    on botocore clients (`gasmon.adapters.aws.aws_client`), built when first needed.
    """

    def __init__(
        self,
        service: JsonService,
        region: str | None = None,
        endpoint_url: str | None = None,
        budget: ClientBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.region = region_of(region)
        self.endpoint_url = endpoint_url or None
        self.budget = budget or CLIENT_BUDGETS[service.budget]
        self._sleep = sleep
        self._clock = clock

    @property
    def url(self) -> str:
        # Read per call: the local stack and the tests set the endpoint variables after import.
        return endpoint_of(self.service.env_name, self.service.signing_name, self.region, self.endpoint_url) + "/"

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One operation, retried as botocore's standard mode retries; its answer as a dict."""
        body = json.dumps(params, separators=(",", ":")).encode()
        attempts = max(1, self.budget.attempts)
        for attempt in range(1, attempts + 1):
            url = self.url
            headers = {
                "Content-Type": self.service.content_type,
                "X-Amz-Target": f"{self.service.target_prefix}.{operation}",
            }
            signed = sign(
                "POST", url, headers, body, self.service.signing_name, self.region, current_credentials(), self._clock()
            )
            try:
                status, raw = send("POST", url, signed, body, (self.budget.connect, self.budget.read))
            except HttpConnectionError as exc:
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                raise _network_error(exc) from exc
            answer = _json_or_empty(raw)
            if status < 300:
                return answer
            code = _error_code(answer) or str(status)
            if attempt < attempts and (
                status in RETRYABLE_STATUSES or code in THROTTLING_CODES or code in TRANSIENT_CODES
            ):
                self._backoff(attempt)
                continue
            raise _client_error(operation, status, code, answer)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _backoff(self, attempt: int) -> None:
        # botocore's standard mode: full jitter, base 2, capped at 20 s.
        self._sleep(min(MAX_BACKOFF_SECONDS, random.random() * 2 ** (attempt - 1)))

    # ---- the operations, with botocore's parameter names ----

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        return self.call("BatchGetItem", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self.call("UpdateItem", params)

    def put_record_batch(self, DeliveryStreamName: str, Records: Sequence[Mapping[str, bytes]]) -> dict[str, Any]:  # noqa: N803
        """Firehose's blobs travel base64-encoded in the JSON protocol."""
        records = [{"Data": base64.b64encode(record["Data"]).decode()} for record in Records]
        return self.call("PutRecordBatch", {"DeliveryStreamName": DeliveryStreamName, "Records": records})


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _client_error(operation: str, status: int, code: str, answer: Mapping[str, Any]) -> Exception:
    from botocore.exceptions import ClientError

    message = str(answer.get("message") or answer.get("Message") or "")
    extra = {key: value for key, value in answer.items() if key not in ("__type", "message", "Message")}
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,  # e.g. CancellationReasons, as botocore puts them
    }
    return ClientError(response, operation)


def _network_error(error: HttpConnectionError) -> Exception:
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    if error.timed_out:
        return ReadTimeoutError(endpoint_url=error.url)
    return EndpointConnectionError(endpoint_url=error.url)


class SignedHttp:
    """Requests to one HTTP(S) endpoint (an OpenSearch domain), SigV4-signed for `service` unless
    `sign_requests` is off (the local stack's and the tests' unsigned stores)."""

    def __init__(
        self,
        endpoint: str,
        service: str,
        region: str | None = None,
        sign_requests: bool = True,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoint = (endpoint if "://" in endpoint else f"https://{endpoint}").rstrip("/")
        self.service = service
        self.region = region_of(region)
        self.sign_requests = sign_requests
        self.timeout = timeout
        self._clock = clock

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One request (no retries: the caller knows what is safe to repeat); (status, parsed JSON
        or None). Raises `HttpConnectionError` when nothing answered."""
        query = canonical_query(params or {})
        url = f"{self.endpoint}{quote(path, safe='/~,*-._')}" + (f"?{query}" if query else "")
        headers = {"Content-Type": content_type} if body is not None else {}
        if self.sign_requests:
            headers = sign(
                method, url, headers, body or b"", self.service, self.region, current_credentials(), self._clock()
            )
        status, raw = send(method, url, headers, body, self.timeout)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:  # a load balancer's HTML 502/504 page
            return status, None
