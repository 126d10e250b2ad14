"""Alarm state, alarm history and operator thresholds in one DynamoDB table (boto3).

Single-table layout (string keys `pk`, `sk`):

| item                 | pk                  | sk                               |
|----------------------|---------------------|----------------------------------|
| alarm state          | `DEVICE#<device>`   | `STATE#<gas>`                    |
| alarm episode        | `DEVICE#<device>`   | `ALARM#<started_at>#<alarm_id>`  |
| device thresholds    | `DEVICE#<device>`   | `THRESHOLDS`                     |
| group thresholds     | `GROUP#<groupid>`   | `THRESHOLDS`                     |

A state item holds `version` (the optimistic-concurrency counter every write is conditioned on)
and `state` (the `AlarmState` as JSON). Episodes carry their fields as attributes plus two index
keys: `by_time_pk` = `ALARMS#<YYYY-MM>` / `by_time_sk` = `<started_at>#<alarm_id>` (index
`by_time`, history across devices) and, only while open, `open_pk` = `OPEN` / `open_sk` (sparse
index `open`). A state item with an open alarm or owed messages is in the same sparse index under
`open_pk` = `DUE` / `open_sk` = `<device>#<gas>`: what the stale sweep reads. Times are UTC,
fixed width (`2026-05-01T12:00:05.000000Z`), so text order is time order.
Threshold items hold one map per gas: `no2 = {warning: 60, critical: 200, band: 5}`.

botocore is imported on first use; with no `endpoint_url` botocore's own `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_DYNAMODB` apply, which is how the local stack points it at moto's server.
Ingest's one read per POST (`load`: BatchGetItem) can go through a `reader` of its own, the
signed-HTTP client of `gasmon.adapters.signed_http` (`build_alarm_store` gives it one), so a
POST that moves no alarm never builds a botocore client; writes (alarm transitions) use it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from gasmon.adapters.aws import aws_client
from gasmon.errors import AlarmConflictError, AlarmStoreUnavailableError, InvalidAlarmQueryError
from gasmon.models import GAS_NAME_PATTERN, AlarmEpisode, AlarmPage, AlarmState, GasThresholds
from gasmon.ports import AlarmKey, AlarmSnapshot, ThresholdScope

BY_TIME_INDEX = "by_time"
OPEN_INDEX = "open"
DUE_PK = "DUE"  # state items with an open alarm or an outbox, in the `open` index for the sweep
THRESHOLDS_SK = "THRESHOLDS"
_BATCH_GET_LIMIT = 100
_READER_OPERATIONS = frozenset({"batch_get_item"})
_THRESHOLD_FIELDS = ("warning", "critical", "band")
_CURSOR_ATTRIBUTES = frozenset({"pk", "sk", "by_time_pk", "by_time_sk"})
# Query requests one `list_alarms` call may make (empty months, filtered-out pages): past it the
# page ends early with a cursor that continues where it stopped, so no `since` is ever unbounded.
MAX_QUERIES_PER_PAGE = 4
# Pages of the sparse `open` index one `open_alarms` call reads (1 MB each: thousands of alarms).
MAX_OPEN_PAGES = 4


def table_definition(table_name: str) -> dict[str, Any]:
    """`CreateTable` arguments matching template.yaml's AlarmTable (tests and the local stack)."""

    def index(name: str, pk: str, sk: str) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }

    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "sk", "by_time_pk", "by_time_sk", "open_pk", "open_sk")
        ],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            index(BY_TIME_INDEX, "by_time_pk", "by_time_sk"),
            index(OPEN_INDEX, "open_pk", "open_sk"),
        ],
    }


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _num(value: float | int) -> dict[str, str]:
    return {"N": repr(float(value)) if isinstance(value, float) else str(value)}


def state_key(device: str, gas: str) -> dict[str, Any]:
    return {"pk": {"S": f"DEVICE#{device}"}, "sk": {"S": f"STATE#{gas}"}}


def threshold_key(scope: ThresholdScope) -> dict[str, Any]:
    kind, name = scope
    return {"pk": {"S": f"{kind.upper()}#{name}"}, "sk": {"S": THRESHOLDS_SK}}


def episode_item(episode: AlarmEpisode) -> dict[str, Any]:
    """The stored form of an episode (also what the dashboard sees through `list_alarms`)."""
    started = _ts(episode.started_at)
    order = f"{started}#{episode.alarm_id}"
    item: dict[str, Any] = {
        "pk": {"S": f"DEVICE#{episode.device}"},
        "sk": {"S": f"ALARM#{order}"},
        "alarm_id": {"S": episode.alarm_id},
        "device": {"S": episode.device},
        "groupid": {"S": episode.groupid},
        "gas": {"S": episode.gas},
        "sensorid": {"S": episode.sensorid},
        "level": {"S": episode.level},
        "threshold": _num(episode.threshold),
        "started_at": {"S": started},
        "peak": _num(episode.peak),
        "peak_at": {"S": _ts(episode.peak_at)},
        "by_time_pk": {"S": f"ALARMS#{started[:7]}"},
        "by_time_sk": {"S": order},
    }
    if episode.critical is not None:
        item["critical"] = _num(episode.critical)
    if episode.ended_at is None:
        item["open_pk"] = {"S": "OPEN"}
        item["open_sk"] = {"S": order}
    else:
        item["ended_at"] = {"S": _ts(episode.ended_at)}
    return item


def episode_from_item(item: Mapping[str, Any]) -> AlarmEpisode:
    return AlarmEpisode(
        alarm_id=item["alarm_id"]["S"],
        device=item["device"]["S"],
        groupid=item["groupid"]["S"],
        gas=item["gas"]["S"],
        sensorid=item["sensorid"]["S"],
        level=item["level"]["S"],
        threshold=float(item["threshold"]["N"]),
        started_at=_parse_ts(item["started_at"]["S"]),
        ended_at=_parse_ts(item["ended_at"]["S"]) if "ended_at" in item else None,
        peak=float(item["peak"]["N"]),
        peak_at=_parse_ts(item["peak_at"]["S"]),
        critical=float(item["critical"]["N"]) if "critical" in item else None,  # absent on older items
    )


def thresholds_from_item(item: Mapping[str, Any], scope: ThresholdScope) -> tuple[dict[str, GasThresholds], list[str]]:
    """Parse a threshold item; a gas entry that is not valid is left out and named in problems."""
    levels: dict[str, GasThresholds] = {}
    problems: list[str] = []
    where = f"thresholds for {scope[0]} {scope[1]!r}"
    for name, value in item.items():
        if name in ("pk", "sk") or "M" not in value:
            continue  # other attributes (a note, who changed it) are the operator's own
        if not re.fullmatch(GAS_NAME_PATTERN, name):
            problems.append(f"{where}: {name!r} is not a gas name; ignored")
            continue
        raw: dict[str, Any] = {}
        for field, typed in value["M"].items():
            if field in _THRESHOLD_FIELDS:
                raw[field] = typed.get("N", typed.get("S"))
        try:
            levels[name] = GasThresholds.model_validate(raw)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in exc.errors(include_url=False))
            problems.append(f"{where}: {name} ignored ({reason})")
    return levels, problems


class DynamoDbAlarmStore:
    """An `AlarmStateStore` on one DynamoDB table; the client is built on first use."""

    def __init__(
        self,
        table_name: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        threshold_cache_seconds: float = 60.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 3,
        reader: Any = None,
    ) -> None:
        self.table_name = table_name
        self.region = region
        self.endpoint_url = endpoint_url or None
        self.threshold_cache_seconds = threshold_cache_seconds
        self._client = client
        self._reader = reader  # answers `batch_get_item` (botocore's inputs, outputs and errors)
        self._client_lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.retries = retries
        self._thresholds: dict[ThresholdScope, tuple[float, dict[str, GasThresholds]]] = {}
        # Round trips, for `make bench` and tests.
        self.reads = 0
        self.writes = 0
        self.conflicts = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = aws_client("dynamodb", self.region, self.endpoint_url)
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        client = self._reader if operation in _READER_OPERATIONS and self._reader is not None else self.client
        try:
            return getattr(client, operation)(**kwargs)
        except Exception as exc:
            # botocore's exceptions are imported only when a call fails (not on a cold POST's path).
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(exc, ClientError):
                raise self._client_error(operation, exc, kwargs) from exc
            if isinstance(exc, BotoCoreError):
                message = f"DynamoDB {operation} on {self.table_name} failed: {exc}"
                raise AlarmStoreUnavailableError(message) from exc
            raise

    def _client_error(self, operation: str, exc: Any, kwargs: Mapping[str, Any]) -> Exception:
        """The gasmon error a botocore `ClientError` stands for."""
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            self.conflicts += 1
            return AlarmConflictError(f"{operation}: the alarm state changed since it was read")
        if code == "TransactionCanceledException":
            reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
            if reasons & {"ConditionalCheckFailed", "TransactionConflict"}:
                self.conflicts += 1
                return AlarmConflictError(f"{operation}: the alarm state changed since it was read")
        if code == "ValidationException" and "ExclusiveStartKey" in kwargs:
            # A start key outside the query's bounds can never succeed: not a retry-later.
            return InvalidAlarmQueryError("cursor does not fit this query; start again without it")
        return AlarmStoreUnavailableError(f"DynamoDB {operation} on {self.table_name} failed: {code}")

    # ---- AlarmStateStore ----

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        """One consistent BatchGetItem (per 100 keys) for the states and the uncached thresholds."""
        now = self._clock()
        stale = [s for s in dict.fromkeys(scopes) if s not in self._thresholds or self._thresholds[s][0] <= now]
        wanted = [state_key(device, gas) for device, gas in dict.fromkeys(keys)] + [threshold_key(s) for s in stale]
        items = self._batch_get(wanted) if wanted else []
        by_key = {(item["pk"]["S"], item["sk"]["S"]): item for item in items}

        states: dict[AlarmKey, AlarmState] = {}
        for device, gas in keys:
            item = by_key.get((f"DEVICE#{device}", f"STATE#{gas}"))
            states[(device, gas)] = self._state_from(item, device, gas)
        problems: list[str] = []
        for scope in stale:
            item = by_key.get((f"{scope[0].upper()}#{scope[1]}", THRESHOLDS_SK))
            levels, found = thresholds_from_item(item, scope) if item else ({}, [])
            problems.extend(found)
            self._thresholds[scope] = (now + self.threshold_cache_seconds, levels)
        overrides = {s: self._thresholds[s][1] for s in scopes if self._thresholds.get(s, (0, {}))[1]}
        return AlarmSnapshot(states=states, overrides=overrides, problems=problems)

    def _state_from(self, item: Mapping[str, Any] | None, device: str, gas: str) -> AlarmState:
        if item is None:
            return AlarmState(device=device, gas=gas)
        try:
            stored = AlarmState.model_validate_json(item["state"]["S"])
        except (KeyError, ValidationError) as exc:
            raise AlarmStoreUnavailableError(f"the alarm state of {device}/{gas} is unreadable: {exc}") from exc
        return stored.model_copy(update={"version": int(item["version"]["N"])})

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table_name: {"Keys": keys[start : start + _BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            for attempt in range(self.retries + 1):
                self.reads += 1
                answer = self._call("batch_get_item", RequestItems=request)
                found.extend(answer.get("Responses", {}).get(self.table_name, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                if attempt < self.retries:
                    self._sleep(0.05 * 2**attempt)
            else:
                raise AlarmStoreUnavailableError("DynamoDB is throttling: alarm states left unread")
        return found

    def save(self, state: AlarmState, episodes: Sequence[AlarmEpisode] = ()) -> AlarmState:
        """Conditional write of the state (version check), in one transaction with its episodes."""
        saved = state.model_copy(update={"version": state.version + 1})
        item = {
            **state_key(state.device, state.gas),
            "version": _num(saved.version),
            "state": {"S": saved.model_dump_json(exclude={"version"})},
        }
        if state.alarm is not None or state.owed:  # listed for the stale sweep (sparse index)
            item["open_pk"] = {"S": DUE_PK}
            item["open_sk"] = {"S": f"{state.device}#{state.gas}"}
        if state.version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": _num(state.version)},
            }
        self.writes += 1
        if not episodes:
            self._call("put_item", TableName=self.table_name, Item=item, **condition)
        else:
            actions = [{"Put": {"TableName": self.table_name, "Item": item, **condition}}]
            actions += [{"Put": {"TableName": self.table_name, "Item": episode_item(e)}} for e in episodes]
            self._call("transact_write_items", TransactItems=actions)
        return saved

    def list_alarms(
        self,
        since: datetime,
        until: datetime | None = None,
        device: str | None = None,
        gas: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlarmPage:
        """Episodes that started in [since, until), newest first; a device's from its own partition.

        At most MAX_QUERIES_PER_PAGE Query requests: a page that reaches the bound before `limit`
        episodes ends early, its cursor continuing at the month and key where it stopped.
        """
        if limit < 1:
            raise InvalidAlarmQueryError("limit must be at least 1")
        end = until or datetime.now(UTC)
        position = _decode_cursor(cursor)
        items: list[AlarmEpisode] = []
        extra: dict[str, Any] = {}
        if gas is not None:
            extra = {"FilterExpression": "gas = :gas", "ExpressionAttributeValues": {":gas": {"S": gas}}}
        if device is not None:
            partitions = [("", f"DEVICE#{device}", f"ALARM#{_ts(since)}", f"ALARM#{_ts(end)}")]
        else:
            partitions = [(m, f"ALARMS#{m}", _ts(since), _ts(end)) for m in _months_back(end, since)]
        queries = 0
        for month, pk, low, high in partitions:
            if position is not None and month != position[0]:
                if month > position[0]:
                    continue  # already returned by an earlier page
            start_key = position[1] if position is not None and month == position[0] else None
            position = None
            if queries >= MAX_QUERIES_PER_PAGE:  # the bound: continue from this month next time
                return AlarmPage(items=items, next_cursor=_encode_cursor(month, None))
            while len(items) < limit and queries < MAX_QUERIES_PER_PAGE:
                key_name, sort_name = ("pk", "sk") if device is not None else ("by_time_pk", "by_time_sk")
                request: dict[str, Any] = {
                    "TableName": self.table_name,
                    "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :low AND :high",
                    "ExpressionAttributeNames": {"#pk": key_name, "#sk": sort_name},
                    "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
                    "ScanIndexForward": False,
                    "Limit": limit - len(items),
                }
                if device is None:
                    request["IndexName"] = BY_TIME_INDEX
                if extra:
                    request["FilterExpression"] = extra["FilterExpression"]
                    request["ExpressionAttributeValues"].update(extra["ExpressionAttributeValues"])
                if start_key:
                    request["ExclusiveStartKey"] = start_key
                self.reads += 1
                queries += 1
                answer = self._call("query", **request)
                items.extend(episode_from_item(i) for i in answer.get("Items", []))
                start_key = answer.get("LastEvaluatedKey")
                if not start_key:
                    break
            if len(items) >= limit or (start_key and queries >= MAX_QUERIES_PER_PAGE):
                next_cursor = _encode_cursor(month, start_key) if start_key else _next_partition(partitions, month)
                return AlarmPage(items=items, next_cursor=next_cursor)
        return AlarmPage(items=items)

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        """Every open episode, newest first, from the sparse `open` index (at most MAX_OPEN_PAGES)."""
        found: list[AlarmEpisode] = []
        start_key: dict[str, Any] | None = None
        for _ in range(MAX_OPEN_PAGES):
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": OPEN_INDEX,
                "KeyConditionExpression": "open_pk = :open",
                "ExpressionAttributeValues": {":open": {"S": "OPEN"}},
                "ScanIndexForward": False,
            }
            if start_key:
                request["ExclusiveStartKey"] = start_key
            self.reads += 1
            answer = self._call("query", **request)
            found.extend(episode_from_item(i) for i in answer.get("Items", []))
            start_key = answer.get("LastEvaluatedKey")
            if not start_key:
                break
        return [e for e in found if (device is None or e.device == device) and (gas is None or e.gas == gas)]

    def due_states(self, limit: int = 1000) -> list[AlarmState]:
        """States with an open alarm or an outbox, from the sparse `open` index (partition `DUE`)."""
        found: list[AlarmState] = []
        start_key: dict[str, Any] | None = None
        while len(found) < limit:
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": OPEN_INDEX,
                "KeyConditionExpression": "open_pk = :due",
                "ExpressionAttributeValues": {":due": {"S": DUE_PK}},
                "Limit": limit - len(found),
            }
            if start_key:
                request["ExclusiveStartKey"] = start_key
            self.reads += 1
            answer = self._call("query", **request)
            for item in answer.get("Items", []):
                device, gas = item["pk"]["S"].removeprefix("DEVICE#"), item["sk"]["S"].removeprefix("STATE#")
                found.append(self._state_from(item, device, gas))
            start_key = answer.get("LastEvaluatedKey")
            if not start_key:
                break
        return found

    # ---- For operators' tooling, tests and the local stack ----

    def put_thresholds(self, scope: ThresholdScope, gases: Mapping[str, GasThresholds]) -> None:
        """Write the threshold item of a group or device (what the documented put-item does)."""
        item: dict[str, Any] = dict(threshold_key(scope))
        for gas, levels in gases.items():
            fields = {name: _num(value) for name, value in levels.model_dump(exclude_none=True).items()}
            item[gas] = {"M": fields}
        self._call("put_item", TableName=self.table_name, Item=item)
        self._thresholds.pop(scope, None)

    def create_table(self) -> None:
        """Create the table as template.yaml does (moto in tests, the local stack)."""
        self._call("create_table", **table_definition(self.table_name))


def _months_back(end: datetime, since: datetime) -> Iterator[str]:
    """`YYYY-MM` buckets from `end`'s month back to `since`'s, newest first."""
    year, month = end.astimezone(UTC).year, end.astimezone(UTC).month
    first = since.astimezone(UTC)
    while (year, month) >= (first.year, first.month):
        yield f"{year:04d}-{month:02d}"
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)


def _next_partition(partitions: Sequence[tuple[str, str, str, str]], month: str) -> str | None:
    months = [p[0] for p in partitions]
    index = months.index(month)
    return _encode_cursor(months[index + 1], None) if index + 1 < len(months) else None


def _encode_cursor(month: str, start_key: dict[str, Any] | None) -> str:
    raw = json.dumps({"m": month, "k": start_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[str, dict[str, Any] | None] | None:
    if not cursor:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        month, key = decoded["m"], decoded["k"]
        if not isinstance(month, str) or not (key is None or isinstance(key, dict)):
            raise ValueError
        for name, value in (key or {}).items():  # only key attributes this adapter pages on, as strings
            if name not in _CURSOR_ATTRIBUTES or set(value) != {"S"} or not isinstance(value["S"], str):
                raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidAlarmQueryError("cursor is not one this API gave out; start again without it") from None
    return month, key
