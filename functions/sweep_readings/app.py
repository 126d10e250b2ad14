"""Hourly retention sweep: readings older than RETENTION_DAYS leave the reading store.

Thin handler: build the store's sweeper from settings, call `gasmon.retention.sweep`, log and
count what it did. Every accepted reading was archived before it was stored, so nothing deleted
here is lost. A failure raises: Lambda retries it, then the event goes to the sweep's dead-letter
queue, and the next hourly run covers the same ground anyway.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_retention_sweeper
from gasmon.observability import logger, metrics, tracer
from gasmon.ports import RetentionSweeper
from gasmon.retention import sweep
from gasmon.settings import SweepSettings


@cache
def _settings() -> SweepSettings:
    return SweepSettings()


@cache
def _sweeper() -> RetentionSweeper:
    return build_retention_sweeper(_settings())


def _utc_now() -> datetime:
    return datetime.now(UTC)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any],
    context: LambdaContext,
    sweeper: RetentionSweeper | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Lambda entry point (a scheduled event); tests hand in their own store and clock."""
    settings = _settings()
    outcome = sweep(
        sweeper or _sweeper(),
        (clock or _utc_now)(),
        settings.retention_days,
        settings.sweep_batch_size,
        settings.sweep_max_batches,
    )
    metrics.add_metric("ReadingsExpired", MetricUnit.Count, outcome.deleted)
    logger.info(
        "retention sweep",
        extra={"deleted": outcome.deleted, "complete": outcome.complete, "retention_days": settings.retention_days},
    )
    return outcome.model_dump()
