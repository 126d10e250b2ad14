"""Shared fixtures: sample events from events/, a Lambda context, the handlers loaded like Lambda."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

# Settings every handler reads at cold start; tests never reach real AWS.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on stdout
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "gasmon")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "gasmon-tests")
os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-2")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's fake credentials and region, whatever the shell has (no profile, no endpoint)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


# The seed's readings were taken at 2021-09-03 18:14:49 in Seoul; tests that post them run "then".
SEED_TIME = datetime(2021, 9, 3, 9, 15, tzinfo=UTC)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, as `sam local invoke -e` would read it."""
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def device_identity(body: Any) -> dict[str, Any]:
    """The authorizer's context for the device that posts `body`, as if its own key were used:
    the first document's group, and its `deviceid` (else the group) as the thing name. Tests of
    attribution itself pass their own (`authorizer=`)."""
    from gasmon.models import is_safe_id

    try:
        parsed = json.loads(body) if isinstance(body, str | bytes) else body
    except (ValueError, RecursionError):
        parsed = None
    first = parsed[0] if isinstance(parsed, list) and parsed else parsed
    first = first if isinstance(first, dict) else {}
    group = str(first["groupid"]) if "groupid" in first else "2"
    # A registered name is always a safe id; a test posting an unsafe one gets a stand-in device.
    candidates = [str(first.get("deviceid") or ""), group, "test-device"]
    name = next(candidate for candidate in candidates if is_safe_id(candidate))
    return {"role": "device", "name": name, "groupid": group, "principalId": f"device:{name}"}


VIEWER_IDENTITY = {"role": "viewer", "name": "test-viewer", "groupid": "", "principalId": "viewer:test-viewer"}


def ingest_event(
    body: Any, path: str = "/readings", headers: dict[str, str] | None = None, authorizer: Any = "derive"
) -> dict[str, Any]:
    """An API Gateway proxy event like the samples, with another body (and its device's identity)."""
    event = copy.deepcopy(load_event("ingest_seed_document.json"))
    event["path"] = event["resource"] = path
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if headers:
        event["headers"].update(headers)
    if authorizer == "derive":
        event["requestContext"]["authorizer"] = device_identity(body)
    elif authorizer is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = authorizer
    return event


@pytest.fixture(scope="session")
def ingest_handler() -> Callable[..., dict[str, Any]]:
    from gasmon_local.functions import load_handler

    return load_handler("functions/ingest_readings")


@pytest.fixture
def seed_document() -> dict[str, Any]:
    return json.loads(load_event("ingest_seed_document.json")["body"])  # type: ignore[no-any-return]


class FakeLambdaContext:
    function_name = "gasmon-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-test"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/gasmon-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def rest_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    authorizer: Any = "derive",
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as API Gateway hands it to a Lambda function after the
    authorizer: a POST carries its device's identity (`device_identity`), a GET a viewer's;
    `authorizer=None` leaves the context out, a dict replaces it."""
    if authorizer == "derive":
        authorizer = device_identity(body) if method == "POST" else VIEWER_IDENTITY
    all_headers = {"Host": "abc123.execute-api.ap-northeast-2.amazonaws.com", **(headers or {})}
    text = body if body is None or isinstance(body, str) else json.dumps(body)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/Prod{path}",
            "stage": "Prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "127.0.0.1", "apiKey": "test-key", "apiKeyId": "test"},
            "apiId": "abc123",
            "accountId": "123456789012",
            **({"authorizer": authorizer} if authorizer is not None else {}),
        },
        "body": text,
        "isBase64Encoded": False,
    }


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def api_event() -> Callable[..., dict[str, Any]]:
    return rest_event
