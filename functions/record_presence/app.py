"""Target of the IoT rule on `$aws/events/presence/+/+`: record a device's connect/disconnect.

Thin handler: parse the lifecycle event, build cached adapters from settings, call
`gasmon.presence.record_lifecycle_event`, log and count what it did. A malformed event is logged
and dropped (returning normally, so the asynchronous invocation is not retried); store, queue
and SNS failures raise, so Lambda retries and then hands the event to the on-failure queue.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_presence_ports
from gasmon.errors import MalformedEventError
from gasmon.observability import logger, metrics, tracer
from gasmon.policies import presence_policy
from gasmon.ports import CheckScheduler, DeviceDirectory, Notifier, PresenceRepository
from gasmon.presence import PresencePolicy, PresencePorts, parse_lifecycle_event, record_lifecycle_event
from gasmon.settings import RecordPresenceSettings


@cache
def _settings() -> RecordPresenceSettings:
    return RecordPresenceSettings()


@cache
def _policy() -> PresencePolicy:
    return presence_policy(_settings())


@cache
def _ports() -> PresencePorts:
    return build_presence_ports(_settings())


def _utc_now() -> datetime:
    return datetime.now(UTC)


# mypy sees gasmon's decorators as untyped while pyproject lacks `mypy_path = "layers/gasmon"`.
@logger.inject_lambda_context(clear_state=True)  # type: ignore[untyped-decorator]
@tracer.capture_lambda_handler  # type: ignore[untyped-decorator]
@metrics.log_metrics  # type: ignore[untyped-decorator]
def lambda_handler(
    event: dict[str, Any],
    context: LambdaContext,
    repository: PresenceRepository | None = None,
    scheduler: CheckScheduler | None = None,
    notifier: Notifier | None = None,
    directory: DeviceDirectory | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Lambda entry point; tests and the local stack may hand in their own adapters and clock."""
    try:
        lifecycle = parse_lifecycle_event(event)
    except MalformedEventError as error:
        logger.error(
            "dropping a malformed lifecycle event",
            extra={"problem": error.message, "details": [p.model_dump() for p in error.details], "event": event},
        )
        metrics.add_metric(name="MalformedEventsDropped", unit=MetricUnit.Count, value=1)
        return {"outcome": "dropped", "error": error.message, "code": error.code}

    logger.append_keys(client_id=lifecycle.client_id, event_type=lifecycle.event_type)
    ports = PresencePorts.merged(_ports, repository, scheduler, notifier, directory)
    now = (clock or _utc_now)()
    report = record_lifecycle_event(lifecycle, _policy(), now, context.aws_request_id, ports)

    logger.info("lifecycle event recorded", extra=report.model_dump(mode="json"))
    metrics.add_metric(
        name="StaleLifecycleEvents" if report.outcome == "stale" else "LifecycleEventsRecorded",
        unit=MetricUnit.Count,
        value=1,
    )
    if report.outcome == "check_scheduled":
        metrics.add_metric(name="PresenceChecksScheduled", unit=MetricUnit.Count, value=1)
    if report.outcome == "reconnect_notice_sent":
        metrics.add_metric(name="ReconnectNoticesSent", unit=MetricUnit.Count, value=1)
    if report.mark_failed:
        logger.error("the reconnect email went out but could not be marked as sent")
    answer: dict[str, Any] = report.model_dump(mode="json")
    return answer
