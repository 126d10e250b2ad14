"""The query use cases behind GET /series, /devices, /warnings, /alerts, /alarms and /config.

Pure apart from the ports it is handed (`ReadingQueries`, `DeviceStatusSource`,
`AlarmStateStore`): no AWS SDK, no OpenSearch query text, no environment. Times are aware UTC;
cursors are opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from gasmon.errors import (
    AlarmStoreUnavailableError,
    InvalidAlarmQueryError,
    InvalidQueryError,
    StoreUnavailableError,
)
from gasmon.models import AlarmEpisode, Problem, SeriesQuery, parse_gps
from gasmon.ports import AlarmStateStore, DeviceNames, DeviceStatusSource, ReadingQueries
from gasmon.query_models import (
    AlarmHistoryPage,
    AlarmStateFilter,
    AlarmView,
    AlertPage,
    DashboardConfig,
    DevicePage,
    DeviceView,
    GasLevels,
    SeriesPoint,
    SeriesResponse,
    WarningItem,
    WarningPage,
)

INTERVAL_PATTERN = r"^[1-9][0-9]{0,4}[smhd]$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Widths `interval=auto` picks from: the smallest that keeps the series within TARGET_BUCKETS.
NICE_INTERVALS = ("10s", "30s", "1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d")
TARGET_BUCKETS = 300


# Signs cursors when a deployment sets no CURSOR_KEY: it is in the source, so it only catches edited
# or corrupted cursors; every position is still validated after the signature (see `decode_cursor`).
DEFAULT_CURSOR_KEY = b"gasmon-query-cursor-v1"
_SIGNATURE_BYTES = 16


class QueryPolicy(BaseModel):
    """The limits one deployment puts on queries (built from settings).

    `retention` is how far back the store keeps readings (RETENTION_DAYS): a time before it can
    only ever answer an empty page, so it is a 422. `max_future` is how far past now a time may
    lie. `cursor_key` signs the cursors this API gives out.
    """

    model_config = ConfigDict(frozen=True)

    thresholds: Mapping[str, float]
    critical_thresholds: Mapping[str, float] = {}
    units: Mapping[str, str] = {}
    local_timezone: str = "Asia/Seoul"
    max_buckets: int = 2000
    default_range: timedelta = timedelta(hours=24)
    retention: timedelta = timedelta(days=90)
    max_future: timedelta = timedelta(days=1)
    cursor_key: bytes = DEFAULT_CURSOR_KEY

    def earliest(self, now: datetime) -> datetime:
        """The oldest time a query may name: `retention` before now."""
        return now - self.retention

    def check_time(self, parameter: str, moment: datetime, now: datetime) -> datetime:
        """`moment` in UTC if it lies within [now - retention, now + max_future]; else a 422 naming `parameter`."""
        utc = as_utc(moment)
        earliest, latest = self.earliest(now), now + self.max_future
        if utc < earliest:
            days = self.retention.total_seconds() / 86400
            raise InvalidQueryError(
                f"{parameter} is before the retention period",
                [
                    Problem(
                        path=parameter,
                        problem=f"must be at or after {earliest.isoformat()} (the retention period: "
                        f"data older than {days:g} days is not kept)",
                    )
                ],
            )
        if utc > latest:
            raise InvalidQueryError(
                f"{parameter} is too far in the future",
                [Problem(path=parameter, problem=f"must be at or before {latest.isoformat()}")],
            )
        return utc


def parse_interval(text: str) -> int:
    """Seconds in an interval written as `<n><unit>` with unit s, m, h or d (`5m` -> 300)."""
    if not re.fullmatch(INTERVAL_PATTERN, text):
        raise InvalidQueryError(
            "the interval is invalid",
            [Problem(path="interval", problem="must look like 30s, 5m, 1h or 1d, or be 'auto'")],
        )
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


def format_interval(seconds: int) -> str:
    """The shortest `<n><unit>` text for a number of seconds (300 -> `5m`)."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def auto_interval(span: timedelta) -> int:
    """The smallest nice bucket width that draws `span` in at most TARGET_BUCKETS points."""
    for text in NICE_INTERVALS:
        seconds = parse_interval(text)
        if span.total_seconds() / seconds <= TARGET_BUCKETS:
            return seconds
    return int(-(-span.total_seconds() // (TARGET_BUCKETS * 86400))) * 86400


def _in_calendar(moment: datetime) -> datetime:
    """A query time that stays a time once in UTC and as epoch milliseconds (no year 0 or 10000)."""
    try:
        as_utc(moment).timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("is outside the calendar once in UTC (years 1 to 9999)") from None
    return moment


# A time query parameter: ISO-8601, checked to be representable before any arithmetic on it.
QueryTime = Annotated[datetime, AfterValidator(_in_calendar)]


def as_utc(moment: datetime) -> datetime:
    """A datetime in UTC; one without a zone is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _align(moment: datetime, seconds: int) -> datetime:
    epoch_ms = int(moment.timestamp() * 1000)
    step = seconds * 1000
    return datetime.fromtimestamp((epoch_ms // step) * step / 1000, tz=UTC)


def plan_series(
    gas: str,
    start: datetime | None,
    end: datetime | None,
    interval: str,
    now: datetime,
    policy: QueryPolicy,
    groupid: str | None = None,
    sensorid: str | None = None,
    deviceid: str | None = None,
    device: str | None = None,
) -> SeriesQuery:
    """Turn GET /series parameters into a `SeriesQuery`, or say which parameter is wrong.

    `end` defaults to now and `start` to `policy.default_range` before it. `start` is aligned
    down to the bucket width so that every bucket is whole; buckets start on multiples of the
    width since the Unix epoch (UTC), as OpenSearch's fixed_interval date_histogram does.
    """
    end_utc = policy.check_time("end", end, now) if end else now
    if start:
        start_utc = policy.check_time("start", start, now)
    else:
        start_utc = max(end_utc - policy.default_range, policy.earliest(now))
    if start_utc >= end_utc:
        raise InvalidQueryError("the time range is empty", [Problem(path="start", problem="must be before end")])
    seconds = auto_interval(end_utc - start_utc) if interval == "auto" else parse_interval(interval)
    aligned = _align(start_utc, seconds)
    buckets = -(-int((end_utc - aligned).total_seconds()) // seconds)
    if buckets > policy.max_buckets:
        raise InvalidQueryError(
            "the series would be too long",
            [
                Problem(
                    path="interval",
                    problem=f"gives {buckets} buckets over this range; at most {policy.max_buckets} "
                    "(choose a wider interval or a shorter range)",
                )
            ],
        )
    return SeriesQuery(
        gas=gas,
        start=aligned,
        end=end_utc,
        interval_seconds=seconds,
        groupid=groupid,
        sensorid=sensorid,
        deviceid=deviceid,
        device=device,
    )


def _round(value: float) -> float:
    return round(value, 4)


def series(queries: ReadingQueries, query: SeriesQuery, policy: QueryPolicy) -> SeriesResponse:
    """Every bucket of the query's range, oldest first; empty buckets have count 0 and no values.

    The store returns non-empty buckets only; filling the gaps here gives the chart a point per
    bucket (a gap in the line, not a line drawn across missing data) from either store.
    """
    stats = {int(b.start.timestamp()): b for b in queries.bucket_stats(query)}
    points: list[SeriesPoint] = []
    moment = query.start
    step = timedelta(seconds=query.interval_seconds)
    while moment < query.end:
        found = stats.get(int(moment.timestamp()))
        if found is None:
            points.append(SeriesPoint(start=moment, count=0))
        else:
            points.append(
                SeriesPoint(
                    start=moment,
                    count=found.count,
                    avg=_round(found.avg),
                    min=_round(found.min),
                    max=_round(found.max),
                )
            )
        moment += step
    return SeriesResponse(
        gas=query.gas,
        interval=format_interval(query.interval_seconds),
        start=query.start,
        end=query.end,
        threshold=policy.thresholds.get(query.gas),
        groupid=query.groupid,
        sensorid=query.sensorid,
        deviceid=query.deviceid,
        device=query.device,
        points=points,
    )


def dashboard_config(policy: QueryPolicy, alarms: bool) -> DashboardConfig:
    """What the dashboard labels and lines its charts with: the time zone, each gas's unit and levels.

    Every gas with a unit or a level is listed. The critical level is given only when this API has
    alarm history (`alarms`): without an alarm table nothing escalates, so there is no critical line.
    """
    gases = sorted({*policy.units, *policy.thresholds, *policy.critical_thresholds})
    return DashboardConfig(
        local_timezone=policy.local_timezone,
        gases={
            gas: GasLevels(
                unit=policy.units.get(gas, ""),
                warning=policy.thresholds.get(gas),
                critical=policy.critical_thresholds.get(gas) if alarms else None,
            )
            for gas in gases
        },
        alarms=alarms,
    )


# ---- cursors: opaque to clients, signed, checked on the way back in ----

_BAD_CURSOR = InvalidQueryError(
    "the cursor is not valid here",
    [Problem(path="cursor", problem="pass back the next_cursor of the previous page of this list")],
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES])


def encode_cursor(kind: str, position: dict[str, Any], key: bytes = DEFAULT_CURSOR_KEY) -> str:
    """An opaque, URL-safe cursor: where to continue in the list `kind`, HMAC-signed with `key`."""
    payload = _b64(json.dumps({"k": kind, **position}, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(key, payload)}"


def decode_cursor(kind: str, cursor: str | None, key: bytes = DEFAULT_CURSOR_KEY) -> dict[str, Any] | None:
    """The position inside a cursor `encode_cursor` gave out for `kind`; `InvalidQueryError` (a 422
    naming `cursor`) for anything else: unsigned, signed with another key, edited, or another list's."""
    if not cursor:
        return None
    payload, dot, signature = cursor.partition(".")
    if not dot or not hmac.compare_digest(signature.encode(), _signature(key, payload).encode()):
        raise _BAD_CURSOR
    try:
        decoded = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        decoded = None
    if not isinstance(decoded, dict) or decoded.get("k") != kind:
        raise _BAD_CURSOR
    return decoded


# Epoch milliseconds a cursor position may hold: years 1970 to 9998, so every one is a datetime.
_MAX_CURSOR_MS = 253_370_764_800_000


def _time_position(kind: str, cursor: str | None, key_name: str, key: bytes) -> tuple[datetime, str] | None:
    position = decode_cursor(kind, cursor, key)
    if position is None:
        return None
    at, name = position.get("t"), position.get(key_name)
    if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= _MAX_CURSOR_MS or not isinstance(name, str):
        raise _BAD_CURSOR
    return datetime.fromtimestamp(at / 1000, tz=UTC), name


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---- devices ----


def device_page(
    queries: ReadingQueries,
    presence: DeviceStatusSource,
    policy: QueryPolicy,
    limit: int,
    cursor: str | None = None,
    groupid: str | None = None,
    registry: DeviceNames | None = None,
) -> DevicePage:
    """One page of the device table, sorted by device key: latest values joined with presence.

    A device presence knows but that never posted a reading is listed too (without values),
    unless the page is filtered by group, which presence does not record. A device joins presence
    where its key (`deviceid`, else `groupid`) equals the MQTT client id. With the device
    `registry`, a registered device is named from it: its group and, where it has one, its
    location (one batch read per 100 devices shown, so at most 5 for the largest page).
    """
    position = decode_cursor("d", cursor, policy.cursor_key)
    after = position.get("d") if position else None
    if position is not None and not isinstance(after, str):
        raise _BAD_CURSOR
    latest = queries.latest_by_device(after, limit + 1, groupid=groupid)
    statuses = presence.statuses() if presence.configured else {}

    rows: dict[str, DeviceView] = {}
    for item in latest:
        crossed = [
            gas
            for gas, reading in sorted(item.values.items())
            if gas in policy.thresholds and reading.value >= policy.thresholds[gas]
        ]
        rows[item.device] = DeviceView(**item.model_dump(), over_threshold=crossed, status="unknown")
    if groupid is None:
        for client_id in statuses:
            if client_id not in rows and (after is None or client_id > after):
                rows[client_id] = DeviceView(device=client_id, deviceid=client_id, last_seen=None, status="unknown")

    # The store's page holds every stored key up to its last one, so the first `limit` keys of
    # the union are complete; anything past them belongs to the next page.
    ordered = sorted(rows)
    shown = ordered[:limit]
    registered: dict[str, Any] = {}
    if registry is not None:
        for start in range(0, len(shown), REGISTRY_BATCH):
            registered.update(registry.devices_named(shown[start : start + REGISTRY_BATCH]))
    devices = []
    for key in shown:
        row = rows[key]
        record = registered.get(key)
        if record is not None:
            row = row.model_copy(update=_named(record.groupid, record.location))
        status = statuses.get(key)
        if status is not None:
            row = row.model_copy(
                update={
                    "status": status.state,
                    "status_since": status.since,
                    "disconnect_reason": status.reason if status.state == "offline" else None,
                }
            )
        devices.append(row)
    next_cursor = encode_cursor("d", {"d": shown[-1]}, policy.cursor_key) if len(ordered) > limit and shown else None
    return DevicePage(devices=devices, presence=presence.configured, next_cursor=next_cursor)


REGISTRY_BATCH = 100  # devices per registry read (DynamoDB's BatchGetItem limit)


def _named(groupid: str, location: str | None) -> dict[str, object]:
    """A device row's group and place as the registry states them (its location only if it parses)."""
    update: dict[str, object] = {"groupid": groupid}
    if location:
        try:
            lat, lon = parse_gps(location)
        except ValueError:
            return update
        update.update(gps=location, lat=lat, lon=lon)
    return update


# ---- warnings (threshold crossings) ----


def warning_page(
    queries: ReadingQueries,
    policy: QueryPolicy,
    now: datetime,
    limit: int,
    since: datetime | None = None,
    cursor: str | None = None,
    gas: str | None = None,
    groupid: str | None = None,
) -> WarningPage:
    """Readings at or above their gas's threshold since `since` (default: `policy.default_range`
    before now), newest first, one page: one store call.

    Derived from the readings and the deployment's thresholds, so it shows every crossing, not
    only those an alarm was raised for.
    """
    thresholds = dict(policy.thresholds)
    if gas is not None:
        thresholds = {gas: thresholds[gas]} if gas in thresholds else {}
    since_utc = policy.check_time("since", since, now) if since else now - policy.default_range
    before = _time_position("w", cursor, "id", policy.cursor_key)
    found = (
        queries.readings_at_or_above(thresholds, since_utc, limit + 1, before=before, groupid=groupid)
        if thresholds
        else []
    )
    items = [
        WarningItem(
            reading_id=r.reading_id,
            device=r.device,
            deviceid=r.deviceid,
            groupid=r.groupid,
            sensorid=r.sensorid,
            gas=r.gas,
            value=r.value,
            threshold=thresholds[r.gas],
            at=r.created_at,
            createdtime=r.createdtime,
            gps=r.gps,
        )
        for r in found[:limit]
    ]
    next_cursor = (
        encode_cursor("w", {"t": _ms(items[-1].at), "id": items[-1].reading_id}, policy.cursor_key)
        if len(found) > limit
        else None
    )
    return WarningPage(warnings=items, since=since_utc, thresholds=thresholds, next_cursor=next_cursor)


# ---- disconnect alerts ----


ALERT_DEFAULT_RANGE = timedelta(days=7)


def alert_page(
    presence: DeviceStatusSource,
    policy: QueryPolicy,
    now: datetime,
    limit: int,
    since: datetime | None = None,
    cursor: str | None = None,
) -> AlertPage:
    """Disconnect alerts presence sent since `since` (default: a week before now, within the
    retention period), newest first, one page: one presence call (empty without presence)."""
    if since:
        since_utc = policy.check_time("since", since, now)
    else:
        since_utc = max(now - ALERT_DEFAULT_RANGE, policy.earliest(now))
    before = _time_position("a", cursor, "c", policy.cursor_key)
    if not presence.configured:
        return AlertPage(alerts=[], since=since_utc, presence=False)
    found = presence.recent_alerts(since_utc, limit + 1, before=before)
    alerts = found[:limit]
    next_cursor = (
        encode_cursor("a", {"t": _ms(alerts[-1].disconnected_at), "c": alerts[-1].client_id}, policy.cursor_key)
        if len(found) > limit
        else None
    )
    return AlertPage(alerts=alerts, since=since_utc, presence=True, next_cursor=next_cursor)


# ---- alarm history (episodes from the alarm table) ----

# Store pages one GET /alarms?state=closed may read to fill its page; open episodes are skipped,
# and there is at most one open per (device, gas), so a few pages always suffice in practice. Each
# store page costs at most `AlarmStateStore.list_alarms`' own bound of requests, so a request
# reads at most MAX_ALARM_STORE_PAGES of them whatever its parameters; a page cut short by the
# bound still carries a cursor that continues where it stopped.
MAX_ALARM_STORE_PAGES = 3


def alarm_page(
    store: AlarmStateStore | None,
    state: AlarmStateFilter,
    now: datetime,
    limit: int,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    device: str | None = None,
    gas: str | None = None,
    policy: QueryPolicy | None = None,
) -> AlarmHistoryPage:
    """One page of alarm episodes, newest first (by start); empty, `configured=False`, without a store.

    `state=open` lists every alarm open now, whenever it started (only those started at or after
    `since` when it is given): an alarm open for three days is the one an operator must see.
    `closed` and `all` list episodes that started in [since, until), `since` defaulting to
    `policy.default_range` before now; both must lie within the retention period. Cursors are
    signed and name the state they were given for.
    """
    policy = policy or QueryPolicy(thresholds={})
    start = policy.check_time("since", since, now) if since else now - policy.default_range
    since_utc = None if state == "open" and since is None else start  # as listed: None = no lower bound
    until_utc = policy.check_time("until", until, now) if until else None
    if since_utc is not None and until_utc is not None and until_utc <= since_utc:
        raise InvalidQueryError("the time range is empty", [Problem(path="until", problem="must be after since")])
    kind = f"alarms-{state}"
    position = decode_cursor(kind, cursor, policy.cursor_key)
    # A cursor continues the query it was given for: the same filters, and the range as it was
    # resolved then (a default `since` moves with the clock; the store's cursor must not).
    scope = _alarm_scope(device, gas)
    if position is not None and position.get("q") != scope:
        raise InvalidQueryError(
            "the cursor is not valid here",
            [Problem(path="cursor", problem="belongs to a query with other filters; start again without it")],
        )
    page = AlarmHistoryPage(alarms=[], configured=store is not None, state=state, since=since_utc, until=until_utc)
    if store is None:
        return page
    history_end = until_utc or now
    if state != "open" and position is not None:
        start, history_end = _history_range(position)
    try:
        if state == "open":
            episodes, next_position = _open_page(store, since_utc, until_utc, limit, position, device, gas)
        else:
            episodes, next_position = _history_page(store, state, start, history_end, limit, position, device, gas)
            if next_position is not None:
                next_position |= {"s": _ms(start), "u": _ms(history_end)}
    except InvalidAlarmQueryError:
        # Only a cursor this API signed reaches the store, so this is one from before a store change.
        raise InvalidQueryError(
            "the cursor is not valid here", [Problem(path="cursor", problem="is out of date; start again without it")]
        ) from None
    except AlarmStoreUnavailableError as exc:
        raise StoreUnavailableError(f"the alarm history cannot be read now: {exc}") from exc
    next_cursor = (
        encode_cursor(kind, next_position | {"q": scope}, policy.cursor_key) if next_position is not None else None
    )
    return page.model_copy(update={"alarms": [AlarmView.of(e) for e in episodes], "next_cursor": next_cursor})


def _alarm_scope(device: str | None, gas: str | None) -> str:
    """The filters an alarm cursor belongs to, as a short digest kept in the cursor."""
    return hashlib.sha256(json.dumps([device, gas]).encode()).hexdigest()[:12]


def _history_range(position: dict[str, Any]) -> tuple[datetime, datetime]:
    """The [since, until) a history cursor was given for."""
    bounds = []
    for value in (position.get("s"), position.get("u")):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_CURSOR_MS:
            raise _BAD_CURSOR
        bounds.append(datetime.fromtimestamp(value / 1000, tz=UTC))
    return bounds[0], bounds[1]


def _open_page(
    store: AlarmStateStore,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    position: dict[str, Any] | None,
    device: str | None,
    gas: str | None,
) -> tuple[list[AlarmEpisode], dict[str, Any] | None]:
    """Open episodes, newest first, paged by (started_at, alarm_id): the store returns them all."""
    before: tuple[int, str] | None = None
    if position is not None:
        at, alarm_id = position.get("t"), position.get("id")
        if not isinstance(at, int) or isinstance(at, bool) or not isinstance(alarm_id, str):
            raise _BAD_CURSOR
        before = (at, alarm_id)
    found = [
        e
        for e in store.open_alarms(device=device, gas=gas)
        if (since is None or e.started_at >= since) and (until is None or e.started_at < until)
    ]
    found.sort(key=lambda e: (_ms(e.started_at), e.alarm_id), reverse=True)
    if before is not None:
        found = [e for e in found if (_ms(e.started_at), e.alarm_id) < before]
    shown = found[:limit]
    more = len(found) > limit
    return shown, ({"t": _ms(shown[-1].started_at), "id": shown[-1].alarm_id} if more else None)


def _history_page(
    store: AlarmStateStore,
    state: AlarmStateFilter,
    since: datetime,
    until: datetime,
    limit: int,
    position: dict[str, Any] | None,
    device: str | None,
    gas: str | None,
) -> tuple[list[AlarmEpisode], dict[str, Any] | None]:
    """Episodes from at most MAX_ALARM_STORE_PAGES store pages; `closed` skips the open ones and
    reads on to fill. The page may hold fewer than `limit` with a cursor: the bound was reached."""
    store_cursor = position.get("c") if position is not None else None
    if store_cursor is not None and not isinstance(store_cursor, str):
        raise _BAD_CURSOR
    episodes: list[AlarmEpisode] = []
    for _ in range(MAX_ALARM_STORE_PAGES):
        # Never more than the page still has room for: the store's cursor then points just past
        # the last episode shown, so the next page starts exactly there.
        found = store.list_alarms(
            since, until, device=device, gas=gas, limit=limit - len(episodes), cursor=store_cursor
        )
        episodes.extend(e for e in found.items if state == "all" or not e.is_open)
        store_cursor = found.next_cursor
        if store_cursor is None or len(episodes) >= limit:
            break
    return episodes, ({"c": store_cursor} if store_cursor is not None else None)
