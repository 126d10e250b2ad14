"""Consumer of the presence-check queue: email once if a device is still gone after the grace.

Thin handler: Powertools' BatchProcessor hands each SQS record to `_check`, which parses it and
calls `gasmon.presence.run_presence_check`. Records that fail (store or SNS unavailable) are
reported in `batchItemFailures`, so only they come back; a malformed record is logged and
dropped, since a retry could only fail again.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_presence_ports
from gasmon.errors import MalformedEventError
from gasmon.observability import logger, metrics, tracer
from gasmon.policies import presence_policy
from gasmon.ports import CheckScheduler, DeviceDirectory, Notifier, PresenceRepository
from gasmon.presence import PresencePolicy, PresencePorts, parse_check_request, run_presence_check
from gasmon.settings import CheckPresenceSettings

# Every record reports its own outcome, even when the whole batch fails.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_METRICS = {
    "alert_sent": "DisconnectAlertsSent",
    "skipped": "PresenceChecksSkipped",
    "rescheduled": "PresenceChecksRescheduled",
    "claimed_elsewhere": "PresenceChecksClaimedElsewhere",
}


@cache
def _settings() -> CheckPresenceSettings:
    return CheckPresenceSettings()


@cache
def _policy() -> PresencePolicy:
    return presence_policy(_settings())


@cache
def _ports() -> PresencePorts:
    return build_presence_ports(_settings())


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check(record: SQSRecord, ports: PresencePorts, clock: Callable[[], datetime]) -> None:
    try:
        request = parse_check_request(record.body)
    except MalformedEventError as error:
        logger.error(
            "dropping a malformed presence check",
            extra={"message_id": record.message_id, "problem": error.message, "body": record.body[:2000]},
        )
        metrics.add_metric(name="MalformedChecksDropped", unit=MetricUnit.Count, value=1)
        return
    try:
        report = run_presence_check(request, _policy(), clock(), record.message_id, ports)
    except Exception:
        # Handed back to SQS by the batch processor; after maxReceiveCount it lands in the DLQ.
        logger.exception("presence check failed; SQS will deliver it again", extra={"client_id": request.client_id})
        metrics.add_metric(name="PresenceCheckFailures", unit=MetricUnit.Count, value=1)
        raise
    logger.info("presence check done", extra={"message_id": record.message_id, **report.model_dump(mode="json")})
    metrics.add_metric(name=_METRICS[report.outcome], unit=MetricUnit.Count, value=1)
    if report.mark_failed:
        logger.error("the alert went out but could not be marked as sent", extra={"client_id": request.client_id})


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
) -> PartialItemFailureResponse:
    """Lambda entry point (SQS batch); tests and the local stack may hand in adapters and a clock."""
    ports = PresencePorts.merged(_ports, repository, scheduler, notifier, directory)
    now = clock or _utc_now
    return process_partial_response(
        event=event,
        record_handler=lambda record: _check(record, ports, now),
        processor=processor,
        context=context,
    )
