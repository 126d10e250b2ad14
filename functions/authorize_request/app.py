"""The API's REQUEST authorizer: the `x-api-key` header -> a device's or a viewer's identity.

Thin handler: hash the presented key, read its credential from the device registry (one
GetItem), let `gasmon.identity` decide, return the policy. API Gateway caches the answer per key
for the authorizer's TTL (template.yaml `ReauthorizeEvery`), and the policy names every route of
the role, so a device costs one registry read per cache period, not one per POST. An unknown,
revoked or expired key gets a Deny (API Gateway answers 403); a missing header never reaches
this function (API Gateway answers 401). A registry outage raises, which API Gateway turns into
a 500 for this request only; nothing is cached.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters.dynamodb_registry import DynamoDbDeviceRegistry
from gasmon.identity import authorizer_answer, hash_key, identify
from gasmon.observability import logger, metrics, tracer
from gasmon.ports import DeviceRegistry
from gasmon.settings import AuthorizerSettings


@cache
def _settings() -> AuthorizerSettings:
    return AuthorizerSettings()


@cache
def _registry() -> DeviceRegistry:
    settings = _settings()
    return DynamoDbDeviceRegistry(settings.device_table, settings.aws_region)


def _presented_key(event: dict[str, Any]) -> str:
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    return str(headers.get("x-api-key") or "")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any],
    context: LambdaContext,
    registry: DeviceRegistry | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Authorizer entry point; tests and `make local` may hand in their own registry and clock."""
    registry = registry or _registry()
    now = (clock or (lambda: datetime.now(UTC)))()
    key = _presented_key(event)
    credential = registry.credential(hash_key(key)) if key else None
    identity = identify(credential, now)
    answer = authorizer_answer(identity, str(event.get("methodArn", "")))
    if identity is None:
        metrics.add_metric("CredentialsDenied", MetricUnit.Count, 1)
        logger.info("credential denied", extra={"known": credential is not None})
    else:
        metrics.add_metric("CredentialsAllowed", MetricUnit.Count, 1)
        if identity.role == "device":
            registry.touch(identity.name, now)  # once per cache period, never per POST
    return answer.response()
