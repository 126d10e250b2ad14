"""The ingest use case: validate posted documents, store readings once, raise threshold warnings.

Pure apart from the two ports it is handed (a `ReadingStore` and a `MessagePublisher`): no AWS
SDK, no environment. Every function here can be called from a REPL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from gasmon.errors import (
    EffectsPendingError,
    InvalidReadingsError,
    MalformedJsonError,
    PublishError,
    RequestTooLargeError,
)
from gasmon.models import (
    GAS_NAME_PATTERN,
    SAFE_ID_PATTERN,
    AlarmOutcome,
    GasmonModel,
    IngestResponse,
    Problem,
    Reading,
    ReadingDocument,
    ReadingStatus,
    parse_gps,
)
from gasmon.ports import AlarmProcessor, MessagePublisher, ReadingArchive, ReadingStore
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


@dataclass(frozen=True, slots=True)
class ValidatedDocument:
    """A posted document after validation: either its readings or what was wrong with it.

    A plain dataclass, not a model: it only carries models the validation already built between
    two functions of this module (one pydantic call less per document on the hot path).
    """

    index: int
    readings: list[Reading] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


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


@lru_cache(maxsize=4096)
def parse_device_time(text: str, local_timezone: str) -> datetime:
    """Turn a device's `createdtime` into an aware UTC datetime.

    Cached (a pure function of two strings, the result immutable): a document's gases usually
    share one `createdtime`.

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
    fields, problems = _reading_fields(document, prefix, policy, now)
    if problems:
        return ValidatedDocument(index=index, problems=problems)
    # One call into pydantic-core for the document's readings (cheaper than one model each).
    return ValidatedDocument(index=index, readings=_readings_adapter().validate_python(fields))


def validate_documents(
    raw_documents: Sequence[Any], is_batch: bool, policy: IngestPolicy, now: datetime
) -> list[ValidatedDocument]:
    """Validate a request's documents: the same answers as `validate_document` on each, in fewer
    pydantic calls.

    The common case, every document well-formed, costs two calls into pydantic-core for the whole
    request (the documents, then every reading). If any document fails the first, every document
    goes through `validate_document`, so a 422 or a partial answer and its field paths are exactly
    what the per-document path says.
    """
    try:
        documents = _documents_adapter().validate_python(raw_documents)
    except ValidationError:
        return [
            validate_document(raw, index, f"[{index}]." if is_batch else "", policy, now)
            for index, raw in enumerate(raw_documents)
        ]
    checked = [
        _reading_fields(document, f"[{index}]." if is_batch else "", policy, now)
        for index, document in enumerate(documents)
    ]
    every = [item for fields, problems in checked if not problems for item in fields]
    readings = _readings_adapter().validate_python(every) if every else []
    validated, taken = [], 0
    for index, (fields, problems) in enumerate(checked):
        if problems:
            validated.append(ValidatedDocument(index=index, problems=problems))
        else:
            validated.append(ValidatedDocument(index=index, readings=readings[taken : taken + len(fields)]))
            taken += len(fields)
    return validated


def _reading_fields(
    document: ReadingDocument, prefix: str, policy: IngestPolicy, now: datetime
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """A valid document's readings as field dicts for `Reading`, or its time problems."""
    lat_lon = parse_gps(document.gps) if document.gps else (None, None)
    fields: list[dict[str, Any]] = []
    problems: list[Problem] = []
    latest, earliest, zone = now + policy.max_future, now - policy.max_age, policy.local_timezone
    groupid, deviceid, gps = document.groupid, document.deviceid, document.gps
    for gas, sample in (document.__pydantic_extra__ or {}).items():
        try:
            created_at = parse_device_time(sample.createdtime, zone)
        except ValueError:
            problem = "is not a time (use 'YYYY-MM-DD HH:MM:SS' or ISO-8601)"
        else:
            if earliest <= created_at <= latest:
                fields.append(
                    {
                        "reading_id": reading_id(groupid, sample.sensorid, gas, created_at, deviceid),
                        "groupid": groupid,
                        "deviceid": deviceid,
                        "gps": gps,
                        "lat": lat_lon[0],
                        "lon": lat_lon[1],
                        "gas": gas,
                        "sensorid": sample.sensorid,
                        "sensortype": sample.sensortype,
                        "value": sample.value,
                        "createdtime": sample.createdtime,
                        "created_at": created_at,
                        "received_at": now,
                    }
                )
                continue
            problem = (
                f"is more than {_human(policy.max_future)} in the future"
                if created_at > latest
                else f"is older than {_human(policy.max_age)}"
            )
        problems.append(Problem(path=f"{prefix}{gas}.createdtime", problem=problem))
    return fields, problems


@cache
def _documents_adapter() -> TypeAdapter[list[ReadingDocument]]:
    return TypeAdapter(list[ReadingDocument])


@cache
def _readings_adapter() -> TypeAdapter[list[Reading]]:
    return TypeAdapter(list[Reading])


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
    archive: ReadingArchive | None = None,
) -> IngestReport:
    """Validate, store and warn for one POST; a retry of it finishes what this one left undone.

    Readings are stored first, in one call (a store failure propagates as
    `StoreUnavailableError` before anything is reported). Then every accepted reading, new or
    duplicate, is evaluated: effects are idempotent by key, not by "was this write new", so a
    retry after a lost store reply still warns. With `alarms`, the alarm state's watermark and
    outbox decide what is still owed (nothing is announced twice by one key's state); without,
    every reading at or over its threshold is warned on each time (at least once; messages carry
    the reading id to dedupe by). A `conflict` (same identity, different value: the stored value
    stays) gets a plain warning when its posted value is over the threshold.

    If a message the readings owe could not be published, `EffectsPendingError` (503 with
    Retry-After) tells the device to retry: its readings are stored, and the retry publishes.

    With `archive`, the request's valid readings are archived first, in one call: if that fails
    (`ArchiveUnavailableError`, a 503) nothing is stored, so the retry recomputes everything; if
    storing fails after it, the retry archives them again under the same `reading_id`. Either way
    an accepted reading is in the archive, and the archive is at least once, keyed by reading_id.

    A reading the store refused for good (`refused`: a mapping conflict, say) is `rejected` with
    the store's reason, so the device sets it aside instead of retrying; its value is still
    checked against the thresholds, as a conflict's is: a refused write never hides a warning.
    """
    validated = validate_documents(documents, is_batch, policy, now)
    if all(doc.problems for doc in validated):
        message = "every document in the batch is invalid" if is_batch else "the reading document is invalid"
        raise InvalidReadingsError(message, [problem for doc in validated for problem in doc.problems])

    to_store = [reading for doc in validated for reading in doc.readings]
    if archive is not None and to_store:
        archive.archive(to_store)
    outcome = store.put_readings(to_store) if to_store else None
    created = outcome.created if outcome else frozenset()
    stored_conflicts = outcome.conflicts if outcome else frozenset()
    refused = outcome.refused if outcome else {}

    # What each posted reading is. The first copy of an id takes the store's answer; a later copy
    # in the same request with the first copy's value takes the same answer (a duplicate of an
    # accepted reading is a duplicate), one with another value is a conflict.
    first: dict[str, tuple[float, ReadingStatus]] = {}
    statuses: list[list[ReadingStatus]] = []
    for doc in validated:
        doc_statuses: list[ReadingStatus] = []
        for r in doc.readings:
            if r.reading_id not in first:
                status: ReadingStatus = (
                    "accepted"
                    if r.reading_id in created
                    else "rejected"
                    if r.reading_id in refused
                    else "conflict"
                    if r.reading_id in stored_conflicts
                    else "duplicate"
                )
                first[r.reading_id] = (r.value, status)
            else:
                value, first_status = first[r.reading_id]
                if first_status == "rejected":
                    status = "rejected"
                else:
                    status = "conflict" if value != r.value or first_status == "conflict" else "duplicate"
            doc_statuses.append(status)
        statuses.append(doc_statuses)

    # Each reading is evaluated once per request (a batch may repeat a document): stored ones by
    # alarms (or the plain check), conflicting and refused values by the plain check.
    evaluate: dict[str, Reading] = {}
    conflicting: dict[tuple[str, float], Reading] = {}
    for doc, doc_statuses in zip(validated, statuses, strict=True):
        for r, status in zip(doc.readings, doc_statuses, strict=True):
            if status in ("conflict", "rejected"):
                conflicting.setdefault((r.reading_id, r.value), r)
            else:
                evaluate.setdefault(r.reading_id, r)

    labels: dict[str, list[str]] = {}
    published = 0
    failed = 0
    pending = 0
    plain = [*conflicting.values()] if alarms is not None else [*evaluate.values(), *conflicting.values()]
    for warning in warnings_for(plain, policy.thresholds):
        try:
            publisher.publish(warning_topic(policy.warning_topic, warning.groupid), warning.model_dump())
        except PublishError:
            failed += 1
            pending += 1
            continue
        published += 1
        labels.setdefault(warning.reading_id or "", []).append(warning.warning)

    alarm_outcome = None
    if alarms is not None and evaluate:
        alarm_outcome = alarms.process(
            list(evaluate.values()), publisher, lambda groupid: warning_topic(policy.warning_topic, groupid)
        )
        for reading_key, reading_labels in alarm_outcome.labels.items():
            labels.setdefault(reading_key, []).extend(reading_labels)
        published += alarm_outcome.published
        failed += alarm_outcome.failed
        pending += alarm_outcome.pending

    # Plain dicts: IngestResponse validates every document's outcome in one pydantic-core call.
    results: list[dict[str, Any]] = []
    listed: set[str] = set()  # a reading's labels are listed once, on its first copy
    for doc, doc_statuses in zip(validated, statuses, strict=True):
        if doc.problems:
            results.append({"index": doc.index, "status": "rejected", "details": doc.problems})
            continue
        outcomes = [
            {"gas": r.gas, "id": r.reading_id, "status": status}
            for r, status in zip(doc.readings, doc_statuses, strict=True)
        ]
        doc_labels: list[str] = []
        for r in doc.readings:
            if r.reading_id not in listed:
                listed.add(r.reading_id)
                doc_labels.extend(labels.get(r.reading_id, []))
        refusals = [
            Problem(path=f"[{doc.index}].{r.gas}" if is_batch else r.gas, problem=refused[r.reading_id])
            for r in doc.readings
            if r.reading_id in refused
        ]
        status_of_doc = (
            "accepted"
            if "accepted" in doc_statuses
            else "rejected"
            if all(s == "rejected" for s in doc_statuses)
            else "conflict"
            if "conflict" in doc_statuses
            else "duplicate"
        )
        results.append(
            {
                "index": doc.index,
                "status": status_of_doc,
                "readings": outcomes,
                "warnings": doc_labels,
                "details": refusals,
            }
        )

    rejected = sum(1 for result in results if result["status"] == "rejected")
    if policy.publish_status_messages:
        _publish_status(publisher, policy, validated, rejected)

    every = [s for st in statuses for s in st]
    response = IngestResponse(
        accepted=every.count("accepted"),
        duplicates=every.count("duplicate"),
        conflicts=every.count("conflict"),
        rejected=rejected,
        warnings=published,
        results=results,  # type: ignore[arg-type]  # validated here into DocumentOutcome
    )
    if pending:
        raise EffectsPendingError(
            f"the readings are stored, but {pending} warnings or alarm updates are not done yet "
            "(the broker or the alarm table failed); retry this POST: it finishes them",
            retry_after_seconds=2,
        )
    return IngestReport(response=response, warnings_failed=failed, alarms=alarm_outcome)


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
