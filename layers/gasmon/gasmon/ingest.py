"""The ingest use case: validate posted documents, store readings once, raise threshold warnings.

Pure apart from the two ports it is handed (a `ReadingStore` and a `MessagePublisher`): no AWS
SDK, no environment. Every function here can be called from a REPL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, ValidationError

from gasmon.errors import InvalidReadingsError, MalformedJsonError, PublishError, RequestTooLargeError
from gasmon.models import (
    GAS_NAME_PATTERN,
    SAFE_ID_PATTERN,
    AlarmOutcome,
    DocumentOutcome,
    GasmonModel,
    IngestResponse,
    Problem,
    Reading,
    ReadingDocument,
    ReadingOutcome,
    parse_gps,
)
from gasmon.ports import AlarmProcessor, MessagePublisher, ReadingStore
from gasmon.readings import DEFAULT_THRESHOLDS, reading_id, warning_topic, warnings_for


class IngestPolicy(GasmonModel):
    """The rules one deployment applies to incoming readings (built from settings)."""

    model_config = ConfigDict(frozen=True)

    thresholds: Mapping[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    local_timezone: str = "Asia/Seoul"
    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=30)
    max_documents: int = 500
    max_body_bytes: int = 1_000_000
    warning_topic: str = "pi/1"
    publish_status_messages: bool = False


class ValidatedDocument(GasmonModel):
    """A posted document after validation: either its readings or what was wrong with it."""

    index: int
    readings: list[Reading] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)


def parse_body(body: str | bytes | None, policy: IngestPolicy, base64_encoded: bool = False) -> tuple[list[Any], bool]:
    """Decode a request body into a list of raw documents; say whether it was a batch.

    Raises `RequestTooLargeError` (413) beyond the size or document limits and
    `MalformedJsonError` (400) when the body is not base64 (when flagged so), not UTF-8 JSON, or
    not a JSON object or array (nesting too deep and integers too long included).
    """
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if base64_encoded:
        try:
            raw = base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise MalformedJsonError(f"the body is marked base64 but is not: {exc}") from None
    if len(raw) > policy.max_body_bytes:
        raise RequestTooLargeError(
            f"the body is {len(raw)} bytes; at most {policy.max_body_bytes} are accepted per request"
        )
    if not raw.strip():
        raise MalformedJsonError("the body is empty; send a JSON object or an array of them")
    try:
        decoded = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJsonError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedJsonError("the body is not valid JSON: it is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        raise MalformedJsonError(f"the body is not valid JSON: {exc}") from None
    if isinstance(decoded, dict):
        return [decoded], False
    if isinstance(decoded, list):
        if not decoded:
            raise InvalidReadingsError(
                "the batch is empty", [Problem(path="", problem="must hold at least one document")]
            )
        if len(decoded) > policy.max_documents:
            raise RequestTooLargeError(
                f"the batch holds {len(decoded)} documents; at most {policy.max_documents} per request"
            )
        return decoded, True
    raise MalformedJsonError("the body must be a JSON object or an array of objects")


def parse_device_time(text: str, local_timezone: str) -> datetime:
    """Turn a device's `createdtime` into an aware UTC datetime.

    The seed sends local wall time without a zone (`2021-09-03 18:14:49`): it is read in
    `local_timezone`. ISO-8601 with an offset or `Z` is honoured as given.
    """
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(local_timezone))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by the offset
        raise ValueError(f"{text!r} is outside the calendar in UTC") from None


# pydantic's error types, said the way a device owner can act on.
PROBLEM_TEXT: dict[str, str] = {
    "missing": "is required",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "finite_number": "must be a finite number (NaN and Infinity are not readings)",
    "greater_than_equal": "must not be negative",
    "less_than_equal": "must be at most 1000000",
    "string_pattern_mismatch": "must not contain control characters",  # unless PATTERN_TEXT says better
    "float_parsing": "must be a number (for example 26.20)",
    "float_type": "must be a number (for example 26.20)",
    "string_type": "must be text or a number",
    "string_too_short": "must not be empty",
    "string_too_long": "is too long (at most 64 characters)",
}


# What each pattern of the models admits, said the way a device owner can act on.
PATTERN_TEXT: dict[str, str] = {
    SAFE_ID_PATTERN: "may hold only letters, digits and . _ : - (1-64 characters, not only dots)",
    GAS_NAME_PATTERN: "is not a gas name (lower-case letters, digits and _, such as co, no2, c2h5oh, h2)",
}


def _problems_from(error: ValidationError, prefix: str) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"])
        pattern = str((item.get("ctx") or {}).get("pattern", ""))
        message = (
            PATTERN_TEXT.get(pattern, "") or PROBLEM_TEXT.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        )
        problems.append(Problem(path=f"{prefix}{path}".rstrip("."), problem=message))
    return problems


def validate_document(raw: Any, index: int, prefix: str, policy: IngestPolicy, now: datetime) -> ValidatedDocument:
    """Validate one raw document into readings, or collect every problem with its field path."""
    try:
        document = ReadingDocument.model_validate(raw)
    except ValidationError as exc:
        return ValidatedDocument(index=index, problems=_problems_from(exc, prefix))

    lat_lon = parse_gps(document.gps) if document.gps else (None, None)
    readings: list[Reading] = []
    problems: list[Problem] = []
    for gas, sample in document.gases.items():
        path = f"{prefix}{gas}.createdtime"
        try:
            created_at = parse_device_time(sample.createdtime, policy.local_timezone)
        except ValueError:
            problems.append(Problem(path=path, problem="is not a time (use 'YYYY-MM-DD HH:MM:SS' or ISO-8601)"))
            continue
        if created_at > now + policy.max_future:
            problems.append(Problem(path=path, problem=f"is more than {_human(policy.max_future)} in the future"))
            continue
        if created_at < now - policy.max_age:
            problems.append(Problem(path=path, problem=f"is older than {_human(policy.max_age)}"))
            continue
        readings.append(
            # Validating again costs less than `model_construct` here: pydantic-core does it in Rust.
            Reading(
                reading_id=reading_id(document.groupid, sample.sensorid, gas, created_at, document.deviceid),
                groupid=document.groupid,
                deviceid=document.deviceid,
                gps=document.gps,
                lat=lat_lon[0],
                lon=lat_lon[1],
                gas=gas,
                sensorid=sample.sensorid,
                sensortype=sample.sensortype,
                value=sample.value,
                createdtime=sample.createdtime,
                created_at=created_at,
                received_at=now,
            )
        )
    if problems:
        return ValidatedDocument(index=index, problems=problems)
    return ValidatedDocument(index=index, readings=readings)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


class IngestReport(GasmonModel):
    """The use case's result: the HTTP answer plus what observability wants to count."""

    response: IngestResponse
    warnings_failed: int = 0
    alarms: AlarmOutcome | None = None  # set when alarms with memory ran


def ingest(
    documents: Sequence[Any],
    is_batch: bool,
    policy: IngestPolicy,
    now: datetime,
    store: ReadingStore,
    publisher: MessagePublisher,
    alarms: AlarmProcessor | None = None,
) -> IngestReport:
    """Validate, store and warn for one POST.

    Readings are stored first, in one call, and warnings are published only for readings the
    store did not already have, so a retried POST neither stores nor warns twice. A store failure
    propagates (`StoreUnavailableError`) before anything is reported accepted.

    With `alarms`, the new readings go through alarms with memory instead of one
    warning per reading over its threshold; without, behaviour is the plain threshold check.
    """
    validated = [
        validate_document(raw, index, f"[{index}]." if is_batch else "", policy, now)
        for index, raw in enumerate(documents)
    ]
    if all(doc.problems for doc in validated):
        message = "every document in the batch is invalid" if is_batch else "the reading document is invalid"
        raise InvalidReadingsError(message, [problem for doc in validated for problem in doc.problems])

    to_store = [reading for doc in validated for reading in doc.readings]
    outcome = store.put_readings(to_store) if to_store else None
    created = outcome.created if outcome else frozenset()

    results: list[DocumentOutcome] = []
    fresh: list[Reading] = []
    claimed: set[str] = set()
    warned_failures = 0
    warning_count = 0
    for doc in validated:
        if doc.problems:
            results.append(DocumentOutcome(index=doc.index, status="rejected", details=doc.problems))
            continue
        # A reading is new once: the first copy in this request claims it, later copies are duplicates.
        new = [r for r in doc.readings if r.reading_id in created and r.reading_id not in claimed]
        claimed.update(r.reading_id for r in new)
        new_ids = {r.reading_id for r in new}
        outcomes = [
            ReadingOutcome(gas=r.gas, id=r.reading_id, status="accepted" if r.reading_id in new_ids else "duplicate")
            for r in doc.readings
        ]
        fresh.extend(new)
        published = []
        for warning in warnings_for(new, policy.thresholds) if alarms is None else []:
            try:
                publisher.publish(warning_topic(policy.warning_topic, warning.groupid), warning.model_dump())
                published.append(warning.warning)
            except PublishError:
                warned_failures += 1
        warning_count += len(published)
        status = "accepted" if new else "duplicate"
        results.append(DocumentOutcome(index=doc.index, status=status, readings=outcomes, warnings=published))

    # ---- Alarms with memory: evaluated once for every new reading of the request ----
    alarm_outcome = None
    if alarms is not None and fresh:
        alarm_outcome = alarms.process(fresh, publisher, lambda groupid: warning_topic(policy.warning_topic, groupid))
        for result in results:
            for reading_outcome in result.readings:
                if reading_outcome.status == "accepted":
                    result.warnings.extend(alarm_outcome.labels.get(reading_outcome.id, []))
        warning_count += alarm_outcome.published
        warned_failures += alarm_outcome.failed

    rejected = sum(1 for doc in validated if doc.problems)
    if policy.publish_status_messages:
        _publish_status(publisher, policy, validated, rejected)

    response = IngestResponse(
        accepted=len(fresh),
        duplicates=len(to_store) - len(fresh),
        rejected=rejected,
        warnings=warning_count,
        results=results,
    )
    return IngestReport(response=response, warnings_failed=warned_failures, alarms=alarm_outcome)


def _publish_status(
    publisher: MessagePublisher, policy: IngestPolicy, validated: Sequence[ValidatedDocument], rejected: int
) -> None:
    """The seed's per-POST `{"msg": ...}` message, for devices that still listen for it."""
    groupids = {r.groupid for doc in validated for r in doc.readings[:1]}
    msg = "success" if rejected == 0 else f"fail: {rejected} of {len(validated)} documents rejected"
    # A per-group topic needs a group; a batch with none valid has no one to tell.
    for groupid in sorted(groupids) or ([] if "{groupid}" in policy.warning_topic else [""]):
        try:
            publisher.publish(warning_topic(policy.warning_topic, groupid), {"msg": msg})
        except PublishError:
            pass
