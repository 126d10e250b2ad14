"""The scheduled alarm sweep: close alarms of silent devices, publish messages still owed.

Thin handler: build cached adapters from settings, call `gasmon.alarms.Alarms.sweep`, report.
A run that could not finish raises, so the schedule's next run (a minute later) tries again.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_alarm_store
from gasmon.adapters.iot_publisher import IotDataPublisher
from gasmon.alarms import AlarmPolicy, Alarms
from gasmon.errors import AlarmStoreUnavailableError
from gasmon.observability import logger, metrics, tracer
from gasmon.policies import sweep_policy
from gasmon.ports import AlarmStateStore, MessagePublisher
from gasmon.readings import warning_topic
from gasmon.settings import AlarmSweepSettings


@cache
def _settings() -> AlarmSweepSettings:
    return AlarmSweepSettings()


@cache
def _policy() -> AlarmPolicy:
    return sweep_policy(_settings())


@cache
def _alarm_store() -> AlarmStateStore | None:
    settings = _settings()
    return build_alarm_store(settings.alarm_table, settings.aws_region)


@cache
def _publisher() -> MessagePublisher:
    settings = _settings()
    return IotDataPublisher(endpoint_url=settings.iot_data_endpoint, region=settings.aws_region)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any],
    context: LambdaContext,
    publisher: MessagePublisher | None = None,
    alarm_store: AlarmStateStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule); tests and `make local` may hand in adapters."""
    store = alarm_store or _alarm_store()
    if store is None:
        return {"closed": 0, "published": 0, "pending": 0, "configured": False}
    topic_template = _settings().warning_topic
    try:
        result = Alarms(store, _policy()).sweep(
            (clock or _utc_now)(), publisher or _publisher(), lambda groupid: warning_topic(topic_template, groupid)
        )
    except AlarmStoreUnavailableError as error:
        logger.error("alarm table unavailable; the next run tries again", extra={"reason": str(error)})
        raise
    for name, count in (
        ("StaleAlarmsClosed", result.closed),
        ("OwedMessagesPublished", result.published),
        ("OwedMessagesPending", result.pending),
        ("AlarmMessagesLost", result.lost),
    ):
        if count:
            metrics.add_metric(name, MetricUnit.Count, count)
    if result.problems:
        logger.warning("alarm sweep problems", extra={"problems": result.problems})
    return {"closed": result.closed, "published": result.published, "pending": result.pending, "configured": True}
