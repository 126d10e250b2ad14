"""The REQUEST authorizer's handler (functions/authorize_request) over an in-memory registry."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.identity import Credential, hash_key
from gasmon_local.functions import load_handler
from tests.fakes import MemoryDeviceRegistry

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
METHOD_ARN = "arn:aws:execute-api:ap-northeast-2:123456789012:abc123/Prod/POST/readings"


@pytest.fixture(scope="module")
def authorize() -> Callable[..., dict[str, Any]]:
    return load_handler("functions/authorize_request")


def request(key: str | None) -> dict[str, Any]:
    headers = {"X-Api-Key": key} if key is not None else {}
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers, "httpMethod": "POST"}


def registry_with(*credentials: Credential) -> MemoryDeviceRegistry:
    registry = MemoryDeviceRegistry()
    for credential in credentials:
        registry.credentials[credential.key_hash] = credential
    return registry


def test_a_devices_key_is_allowed_with_its_identity_after_one_registry_read(
    authorize: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    # Given RPI's key in the registry (by hash), When it is presented, Then RPI is allowed to post
    registry = registry_with(Credential(key_hash=hash_key("rpi-key"), role="device", name="RPI", groupid="2"))
    answer = authorize(request("rpi-key"), lambda_context, registry=registry, clock=lambda: NOW)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"] == {"role": "device", "name": "RPI", "groupid": "2"}
    assert registry.reads == 1 and registry.touched == ["RPI"]


@pytest.mark.parametrize(
    "credential",
    [
        None,
        Credential(key_hash=hash_key("rpi-key"), role="device", name="RPI", groupid="2", state="revoked"),
        Credential(key_hash=hash_key("rpi-key"), role="device", name="RPI", groupid="2", expires_at=NOW - timedelta(1)),
    ],
)
def test_an_unknown_revoked_or_expired_key_is_denied(
    authorize: Callable[..., dict[str, Any]], lambda_context: Any, credential: Credential | None
) -> None:
    registry = registry_with(*([credential] if credential else []))
    answer = authorize(request("rpi-key"), lambda_context, registry=registry, clock=lambda: NOW)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in answer and registry.touched == []


def test_no_key_is_denied_without_reading_the_registry(
    authorize: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    registry = registry_with()
    answer = authorize(request(None), lambda_context, registry=registry, clock=lambda: NOW)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny" and registry.reads == 0
