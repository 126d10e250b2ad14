"""Shared test set-up: Powertools runs quietly and offline; API Gateway events are built here."""

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

# Before any handler module is imported: no X-Ray daemon here, no metrics on stdout.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "gasmon")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "gasmon-tests")


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
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as API Gateway hands it to a Lambda function."""
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
