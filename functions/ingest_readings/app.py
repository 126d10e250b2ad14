"""POST /readings (and the seed's /gasdetector): store gas readings, warn on thresholds.

Thin handler: parse the request, build cached adapters from settings, call `gasmon.ingest`,
shape the answer. Every error a client can cause is a 4xx with a JSON body naming the field.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_alarm_store, build_rate_limiter, build_reading_archive, build_reading_store
from gasmon.adapters.iot_publisher import IotDataPublisher
from gasmon.alarms import AlarmPolicy, Alarms
from gasmon.errors import EffectsPendingError, GasmonError, StoreUnavailableError, TooManyRequestsError
from gasmon.http import error_response, problems_from_validation
from gasmon.identity import Identity, attribute
from gasmon.ingest import IngestPolicy, ingest, parse_body
from gasmon.models import AlarmOutcome, ErrorBody, IngestResponse
from gasmon.observability import logger, metrics, tracer
from gasmon.policies import alarm_policy, ingest_policy
from gasmon.ports import AlarmStateStore, MessagePublisher, RateLimiter, ReadingArchive, ReadingStore
from gasmon.rest import APIGatewayRestResolver, RequestValidationError, Response
from gasmon.settings import IngestSettings

# No route of this function has parameters for Powertools to validate (the body is validated per
# document by the domain), so its validation middleware and OpenAPI compat layer are never loaded.
app = APIGatewayRestResolver()


@cache
def _settings() -> IngestSettings:
    return IngestSettings()


@cache
def _policy() -> IngestPolicy:
    return ingest_policy(_settings())


@cache
def _store() -> ReadingStore:
    return build_reading_store(_settings())


@cache
def _archive() -> ReadingArchive | None:
    return build_reading_archive(_settings())


@cache
def _alarm_policy() -> AlarmPolicy:
    return alarm_policy(_settings())


@cache
def _alarm_store() -> AlarmStateStore | None:
    settings = _settings()
    return build_alarm_store(settings.alarm_table, settings.aws_region, settings.alarm_threshold_cache_seconds)


@cache
def _publisher() -> MessagePublisher:
    settings = _settings()
    return IotDataPublisher(endpoint_url=settings.iot_data_endpoint, region=settings.aws_region)


@cache
def _rate_limiter() -> RateLimiter | None:
    settings = _settings()
    return build_rate_limiter(settings.device_table, settings.device_requests_per_minute, settings.aws_region)


def _utc_now() -> datetime:
    return datetime.now(UTC)


ERRORS: dict[int, Any] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, text in {
        400: "Malformed JSON",
        403: "Not a device credential, or a document names another device's `groupid`/`deviceid`",
        413: "Body over 1 MB or more than 500 documents",
        429: "This device posted more than its requests per minute; retry after the Retry-After header",
        422: "Invalid readings; `details` names each field and its problem",
        503: "Reading store or archive unavailable, or readings stored but their warnings not yet published; "
        "retry the same POST after the Retry-After header",
    }.items()
} | {200: {"description": "What happened to each document", "content": {"application/json": {"model": IngestResponse}}}}


# The body (`gasmon.models.ReadingPost`) is validated per document by the domain, so one bad
# document in a batch does not reject the rest; `make openapi` adds its schema to the spec. The
# route has no parameters for Powertools to validate, and its answer is built from a pydantic
# model already, so Powertools' validation middleware is left off this hot path.
@app.post("/readings", summary="Post gas readings (one document or a batch)", responses=ERRORS, enable_validation=False)
@app.post("/gasdetector", include_in_schema=False, enable_validation=False)
@tracer.capture_method
def post_readings() -> Response[str]:
    event = app.current_event
    documents, is_batch = parse_body(event.body, _policy(), base64_encoded=bool(event.is_base64_encoded))
    # The authorizer names the device behind the key; every document must be that device's.
    identity = Identity.from_context(event.raw_event.get("requestContext", {}).get("authorizer"))
    documents = attribute(documents, is_batch, identity)
    context = app.context
    limiter = context["limiter"]
    if identity is not None and limiter is not None and not limiter.allow(identity.name, context["clock"]()):
        raise TooManyRequestsError(f"{identity.name} posted more than its requests per minute; retry later")
    report = ingest(
        documents,
        is_batch,
        _policy(),
        context["clock"](),
        context["store"],
        context["publisher"],
        context["alarms"],
        archive=context["archive"],
    )
    result = report.response
    metrics.add_metric("ReadingsAccepted", MetricUnit.Count, result.accepted)
    # Zero counts are left out: CloudWatch treats a missing datapoint as none (one call less each).
    for name, count in (
        ("ReadingsDuplicate", result.duplicates),
        ("ReadingsConflict", result.conflicts),
        ("DocumentsRejected", result.rejected),
        ("WarningsPublished", result.warnings),
    ):
        if count:
            metrics.add_metric(name, MetricUnit.Count, count)
    if report.warnings_failed:
        metrics.add_metric("WarningsFailed", MetricUnit.Count, report.warnings_failed)
        logger.error("warnings could not be published", extra={"failed": report.warnings_failed})
    if report.alarms is not None:
        _observe_alarms(report.alarms)
    return Response(status_code=200, content_type="application/json", body=result.model_dump_json())


def _observe_alarms(outcome: AlarmOutcome) -> None:
    """Alarm metrics and logs: lost or degraded alarms are errors an operator must see."""
    if outcome.conflicts:
        metrics.add_metric("AlarmConflicts", MetricUnit.Count, outcome.conflicts)
    if outcome.lost:
        metrics.add_metric("AlarmMessagesLost", MetricUnit.Count, outcome.lost)
    if outcome.degraded:
        metrics.add_metric("AlarmsDegraded", MetricUnit.Count, outcome.degraded)
    if outcome.lost or outcome.degraded:
        logger.error("alarm messages lost or alarms degraded", extra={"problems": outcome.problems})
    elif outcome.problems:
        logger.warning("alarm problems", extra={"problems": outcome.problems})


@app.exception_handler(GasmonError)
def _gasmon_error(error: GasmonError) -> Response[str]:
    if isinstance(error, EffectsPendingError):  # a 503 like the store's, but the store is fine
        logger.error(
            "readings stored, messages still owed: the device is told to retry", extra={"reason": error.message}
        )
        metrics.add_metric("WarningsPending", MetricUnit.Count, 1)
        return error_response(error, headers={"Retry-After": str(error.retry_after_seconds)})
    if isinstance(error, TooManyRequestsError):
        metrics.add_metric("DevicesThrottled", MetricUnit.Count, 1)
        return error_response(error, headers={"Retry-After": str(error.retry_after_seconds)})
    if isinstance(error, StoreUnavailableError):
        logger.warning("reading store unavailable", extra={"reason": error.message})
        metrics.add_metric("StoreUnavailable", MetricUnit.Count, 1)
        return error_response(error, headers={"Retry-After": str(error.retry_after_seconds)})
    metrics.add_metric("RequestsRejected", MetricUnit.Count, 1)
    return error_response(error)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[str]:
    return error_response(problems_from_validation(error))


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    body = ErrorBody(error=f"no route {app.current_event.http_method} {app.current_event.path}", code="not_found")
    return Response(status_code=404, content_type="application/json", body=body.model_dump_json())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any],
    context: LambdaContext,
    store: ReadingStore | None = None,
    publisher: MessagePublisher | None = None,
    clock: Callable[[], datetime] | None = None,
    alarm_store: AlarmStateStore | None = None,
    archive: ReadingArchive | None = None,
    limiter: RateLimiter | None = None,
) -> dict[str, Any]:
    """Lambda entry point; tests and `make local` may hand in their own adapters and clock."""
    alarm_store = alarm_store or _alarm_store()
    alarms = Alarms(alarm_store, _alarm_policy()) if alarm_store is not None else None
    app.append_context(
        store=store or _store(),
        publisher=publisher or _publisher(),
        clock=clock or _utc_now,
        alarms=alarms,
        archive=archive or _archive(),
        limiter=limiter or _rate_limiter(),
    )
    return app.resolve(event, context)
