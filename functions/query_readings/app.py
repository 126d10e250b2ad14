"""GET /series, /devices, /warnings, /alerts, /alarms, /config: what the dashboard shows, read through the ports.

Thin handler: Powertools validates the query string against the annotations below, cached
adapters are built from settings, `gasmon.query` does the work. Every client error is a 422
`ErrorBody` naming the parameter (code `invalid_query`); a store outage is a 503.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.adapters import build_alarm_store, build_device_status_source, build_reading_queries
from gasmon.errors import ForbiddenError, GasmonError, InvalidQueryError, StoreUnavailableError
from gasmon.http import error_response, problems_from_validation
from gasmon.identity import Identity
from gasmon.models import GAS_NAME_PATTERN, SAFE_ID_MAX_LENGTH, SAFE_ID_PATTERN, ErrorBody
from gasmon.observability import logger, metrics, tracer
from gasmon.policies import query_policy
from gasmon.ports import AlarmStateStore, DeviceNames, DeviceStatusSource, ReadingQueries
from gasmon.query import (
    QueryPolicy,
    QueryTime,
    alarm_page,
    alert_page,
    dashboard_config,
    device_page,
    plan_series,
    series,
    warning_page,
)
from gasmon.query_models import AlarmHistoryPage, AlertPage, DashboardConfig, DevicePage, SeriesResponse, WarningPage
from gasmon.rest import APIGatewayRestResolver, RequestValidationError, Response
from gasmon.settings import QuerySettings

app = APIGatewayRestResolver(enable_validation=True)


@cache
def _settings() -> QuerySettings:
    return QuerySettings()


@cache
def _policy() -> QueryPolicy:
    return query_policy(_settings())


@cache
def _queries() -> ReadingQueries:
    return build_reading_queries(_settings())


@cache
def _presence() -> DeviceStatusSource:
    return build_device_status_source(_settings())


@cache
def _alarm_store() -> AlarmStateStore | None:
    settings = _settings()
    return build_alarm_store(settings.alarm_table, settings.aws_region)


def _utc_now() -> datetime:
    return datetime.now(UTC)


ERRORS: dict[int, Any] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, text in {
        422: "A parameter is invalid; `details` names each one and its problem",
        503: "Reading store, presence or alarm table unavailable; retry after the Retry-After header",
    }.items()
}


def _answers(model: type[Any], text: str) -> dict[int, Any]:
    """The route's 200 (its response model, which Powertools omits once `responses` is given) and errors."""
    return {200: {"description": text, "content": {"application/json": {"model": model}}}, **ERRORS}


# Ids are checked against the alphabet ingest accepts: none that it would refuse reaches a store query.
Id = Annotated[str | None, Query(min_length=1, max_length=SAFE_ID_MAX_LENGTH, pattern=SAFE_ID_PATTERN)]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=1024, description="`next_cursor` of the previous page (signed: any other is a 422)"),
]
RETENTION_NOTE = "; at most RETENTION_DAYS (default 90) before now and at most 1 day after it"


@app.get(
    "/series",
    summary="Time series of one gas: avg/min/max/count per interval",
    responses=_answers(SeriesResponse, "Every bucket of the range, oldest first"),
)
@tracer.capture_method
def get_series(
    gas: Annotated[str, Query(pattern=GAS_NAME_PATTERN, description="co, no2, c2h5oh, h2, ...")],
    start: Annotated[QueryTime | None, Query(description="ISO-8601; default: 24 h before end" + RETENTION_NOTE)] = None,
    end: Annotated[QueryTime | None, Query(description="ISO-8601, exclusive; default: now" + RETENTION_NOTE)] = None,
    interval: Annotated[
        str, Query(pattern=r"^(auto|[1-9][0-9]{0,4}[smhd])$", description="Bucket width: 30s, 5m, 1h, 1d or auto")
    ] = "auto",
    groupid: Id = None,
    sensorid: Id = None,
    deviceid: Id = None,
    device: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=SAFE_ID_MAX_LENGTH,
            pattern=SAFE_ID_PATTERN,
            description="One device as GET /devices names it (its deviceid, or its groupid when it sends none)",
        ),
    ] = None,
) -> SeriesResponse:
    context = app.context
    metrics.add_metric("SeriesQueries", MetricUnit.Count, 1)
    query = plan_series(
        gas,
        start,
        end,
        interval,
        context["clock"](),
        _policy(),
        groupid=groupid,
        sensorid=sensorid,
        deviceid=deviceid,
        device=device,
    )
    return series(context["queries"], query, _policy())


@app.get(
    "/devices",
    summary="Devices with their latest values and online/offline state",
    responses=_answers(DevicePage, "One page of devices, sorted by device"),
)
@tracer.capture_method
def get_devices(
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
    groupid: Id = None,
) -> DevicePage:
    context = app.context
    metrics.add_metric("DeviceQueries", MetricUnit.Count, 1)
    return device_page(
        context["queries"],
        context["presence"],
        _policy(),
        limit,
        cursor=cursor,
        groupid=groupid,
        registry=context["registry"],
    )


@app.get(
    "/warnings",
    summary="Recent readings at or above their gas's threshold, newest first",
    responses=_answers(WarningPage, "One page of threshold crossings, newest first"),
)
@tracer.capture_method
def get_warnings(
    since: Annotated[QueryTime | None, Query(description="ISO-8601; default: 24 h ago" + RETENTION_NOTE)] = None,
    gas: Annotated[str | None, Query(pattern=GAS_NAME_PATTERN)] = None,
    groupid: Id = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> WarningPage:
    context = app.context
    metrics.add_metric("WarningQueries", MetricUnit.Count, 1)
    return warning_page(
        context["queries"], _policy(), context["clock"](), limit, since=since, cursor=cursor, gas=gas, groupid=groupid
    )


@app.get(
    "/alerts",
    summary="Recent disconnect alerts from presence, newest first",
    responses=_answers(AlertPage, "One page of disconnect alerts, newest first"),
)
@tracer.capture_method
def get_alerts(
    since: Annotated[QueryTime | None, Query(description="ISO-8601; default: 7 days ago" + RETENTION_NOTE)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Cursor = None,
) -> AlertPage:
    context = app.context
    metrics.add_metric("AlertQueries", MetricUnit.Count, 1)
    return alert_page(context["presence"], _policy(), context["clock"](), limit, since=since, cursor=cursor)


@app.get(
    "/alarms",
    summary="Alarm episodes (open and closed) with start, end, level and peak, newest first",
    responses=_answers(AlarmHistoryPage, "One page of alarm episodes, newest first by start"),
)
@tracer.capture_method
def get_alarms(
    state: Annotated[
        Literal["open", "closed", "all"],
        Query(
            description="open: every alarm open now, whenever it started; closed or all: episodes started since `since`"
        ),
    ] = "all",
    since: Annotated[
        QueryTime | None, Query(description="ISO-8601; default: 24 h ago (state=open: no limit)" + RETENTION_NOTE)
    ] = None,
    until: Annotated[QueryTime | None, Query(description="ISO-8601, exclusive; default: now" + RETENTION_NOTE)] = None,
    device: Id = None,
    gas: Annotated[str | None, Query(pattern=GAS_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> AlarmHistoryPage:
    context = app.context
    metrics.add_metric("AlarmQueries", MetricUnit.Count, 1)
    return alarm_page(
        context["alarms"],
        state,
        context["clock"](),
        limit,
        since=since,
        until=until,
        cursor=cursor,
        device=device,
        gas=gas,
        policy=_policy(),
    )


@app.get(
    "/config",
    summary="The deployment's time zone, and each gas's unit, warning and critical level",
    responses=_answers(DashboardConfig, "What the dashboard labels and lines its charts with"),
)
@tracer.capture_method
def get_config() -> DashboardConfig:
    # Settings only: no store call, whatever the request.
    metrics.add_metric("ConfigQueries", MetricUnit.Count, 1)
    return dashboard_config(_policy(), alarms=app.context["alarms"] is not None)


@cache
def _registry() -> DeviceNames | None:
    """The device registry when DEVICE_TABLE is set (devices are named from it), else None."""
    settings = _settings()
    if not settings.device_table:
        return None
    from gasmon.adapters.dynamodb_registry import DynamoDbDeviceRegistry

    return DynamoDbDeviceRegistry(settings.device_table, region=settings.aws_region)


@app.exception_handler(GasmonError)  # type: ignore[untyped-decorator]  # Powertools leaves it unannotated
def _gasmon_error(error: GasmonError) -> Response[str]:
    if isinstance(error, StoreUnavailableError):
        logger.warning("store unavailable", extra={"reason": error.message})
        metrics.add_metric("StoreUnavailable", MetricUnit.Count, 1)
        return error_response(error, headers={"Retry-After": str(error.retry_after_seconds)})
    metrics.add_metric("QueriesRejected", MetricUnit.Count, 1)
    return error_response(error)


# Pydantic's "String should match pattern '^...$'" tells a person little; say what fits instead.
PATTERN_HINTS = {
    "gas": "must be a gas name in lower case, such as no2, co, c2h5oh or h2",
    "interval": "must be a bucket width such as 30s, 5m, 1h or 1d, or auto",
    **dict.fromkeys(
        ("groupid", "sensorid", "deviceid", "device"),
        "may hold only letters, digits and . _ : - (1-64 characters, not only dots)",
    ),
}


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _invalid_request(error: RequestValidationError) -> Response[str]:
    metrics.add_metric("QueriesRejected", MetricUnit.Count, 1)
    details = [
        problem.model_copy(update={"problem": PATTERN_HINTS[problem.path]})
        if problem.path in PATTERN_HINTS and "pattern" in problem.problem
        else problem
        for problem in problems_from_validation(error).details
    ]
    return error_response(InvalidQueryError("the query is invalid", details))


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
    queries: ReadingQueries | None = None,
    presence: DeviceStatusSource | None = None,
    clock: Callable[[], datetime] | None = None,
    alarm_store: AlarmStateStore | None = None,
    registry: DeviceNames | None = None,
) -> dict[str, Any]:
    """Lambda entry point; tests and `make local` may hand in their own adapters and clock.

    Without `alarm_store`, ALARM_TABLE decides: empty means GET /alarms has no history to show.
    Only a viewer credential reads (the authorizer's policy says so too; this is the second lock).
    """
    identity = Identity.from_context((event.get("requestContext") or {}).get("authorizer"))
    if identity is None or identity.role != "viewer":
        refused = ForbiddenError("only a viewer credential may read the query API")
        body = ErrorBody(error=refused.message, code=refused.code)
        return {"statusCode": 403, "headers": {"Content-Type": "application/json"}, "body": body.model_dump_json()}
    app.append_context(  # type: ignore[no-untyped-call]
        queries=queries or _queries(),
        presence=presence or _presence(),
        clock=clock or _utc_now,
        alarms=alarm_store if alarm_store is not None else _alarm_store(),
        registry=registry if registry is not None else _registry(),
    )
    return app.resolve(event, context)
