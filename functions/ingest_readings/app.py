"""POST /readings (and the seed's /gasdetector): store gas readings, warn on thresholds.

Thin handler: parse the request, build cached adapters from settings, call `gasmon.ingest`,
shape the answer. Every error a client can cause is a 4xx with a JSON body naming the field.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_reading_store
from gasmon.adapters.iot_publisher import IotDataPublisher
from gasmon.errors import GasmonError, StoreUnavailableError
from gasmon.http import error_response, problems_from_validation
from gasmon.ingest import IngestPolicy, ingest, parse_body
from gasmon.models import ErrorBody, IngestResponse
from gasmon.observability import logger, metrics, tracer
from gasmon.ports import MessagePublisher, ReadingStore
from gasmon.settings import IngestSettings

app = APIGatewayRestResolver(enable_validation=True)


@cache
def _settings() -> IngestSettings:
    return IngestSettings()


@cache
def _policy() -> IngestPolicy:
    return _settings().policy()


@cache
def _store() -> ReadingStore:
    return build_reading_store(_settings())


@cache
def _publisher() -> MessagePublisher:
    settings = _settings()
    return IotDataPublisher(endpoint_url=settings.iot_data_endpoint, region=settings.aws_region)


def _utc_now() -> datetime:
    return datetime.now(UTC)


ERRORS: dict[int, Any] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, text in {
        400: "Malformed JSON",
        413: "Body over 1 MB or more than 500 documents",
        422: "Invalid readings; `details` names each field and its problem",
        503: "Reading store unavailable; retry after the Retry-After header",
    }.items()
}


@app.post("/readings", summary="Post gas readings (one document or a batch)", responses=ERRORS)
@app.post("/gasdetector", include_in_schema=False)
@tracer.capture_method
def post_readings() -> IngestResponse:
    # The body (`gasmon.models.ReadingPost`) is validated per document by the domain, so one bad
    # document in a batch does not reject the rest; `make openapi` adds its schema to the spec.
    documents, is_batch = parse_body(app.current_event.decoded_body, _policy())
    context = app.context
    report = ingest(documents, is_batch, _policy(), context["clock"](), context["store"], context["publisher"])
    result = report.response
    metrics.add_metric("ReadingsAccepted", MetricUnit.Count, result.accepted)
    metrics.add_metric("ReadingsDuplicate", MetricUnit.Count, result.duplicates)
    metrics.add_metric("DocumentsRejected", MetricUnit.Count, result.rejected)
    metrics.add_metric("WarningsPublished", MetricUnit.Count, result.warnings)
    if report.warnings_failed:
        metrics.add_metric("WarningsFailed", MetricUnit.Count, report.warnings_failed)
        logger.error("warnings could not be published", extra={"failed": report.warnings_failed})
    return result


@app.exception_handler(GasmonError)
def _gasmon_error(error: GasmonError) -> Response[ErrorBody]:
    if isinstance(error, StoreUnavailableError):
        logger.warning("reading store unavailable", extra={"reason": error.message})
        metrics.add_metric("StoreUnavailable", MetricUnit.Count, 1)
        return error_response(error, headers={"Retry-After": str(error.retry_after_seconds)})
    metrics.add_metric("RequestsRejected", MetricUnit.Count, 1)
    return error_response(error)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[ErrorBody]:
    return error_response(problems_from_validation(error))


@app.not_found
def _not_found(_: Exception) -> Response[ErrorBody]:
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
) -> dict[str, Any]:
    """Lambda entry point; tests and `make local` may hand in their own adapters and clock."""
    app.append_context(store=store or _store(), publisher=publisher or _publisher(), clock=clock or _utc_now)
    return app.resolve(event, context)
