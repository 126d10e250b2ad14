"""Pydantic models for everything that crosses a boundary of gasmon.

The wire shapes follow the seed documents (a Pi's `pub.py` POST, the `pi/1` warning, the IoT
lifecycle event) so that devices written against the seeds work unchanged.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KNOWN_GASES: tuple[str, ...] = ("co", "no2", "c2h5oh", "h2")
GAS_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Top-level keys of a reading document that describe the device, not a gas.
DEVICE_FIELDS: frozenset[str] = frozenset({"groupid", "gps", "deviceid"})


# Ids and names: 1-64 characters, no control characters.
Text = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
# Above a million (ppm: 100 %) a value is a broken sensor or a unit mistake, and it would
# overflow the index's float field.
MAX_VALUE = 1_000_000.0


class GasmonModel(BaseModel):
    """Base of gasmon's models: schemas are built on first use, not at import.

    A Lambda imports every model of the layer but one function uses a few of them; deferring
    keeps the others off the cold start.
    """

    model_config = ConfigDict(defer_build=True)


class GasSample(GasmonModel):
    """One gas sensor's sample as the Pi sends it (values may be strings, as in the seed).

    Checks run in pydantic's core where they can (this is the ingest hot path); friendly messages
    for its error types are in `gasmon.ingest.PROBLEM_TEXT`.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    sensorid: Text
    sensortype: Text
    value: Annotated[float, Field(ge=0, le=MAX_VALUE, allow_inf_nan=False)]
    createdtime: str = Field(min_length=1, max_length=64)

    @field_validator("value", mode="before")
    @classmethod
    def _value_is_not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("createdtime")
    @classmethod
    def _createdtime_is_a_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("is not a time (use 'YYYY-MM-DD HH:MM:SS' or ISO-8601)") from None
        return value


class ReadingDocument(GasmonModel):
    """One document as the seed's `pub.py` posts it: device fields plus one object per gas.

    Every top-level key other than `groupid`, `gps` and `deviceid` names a gas (`co`, `no2`,
    `c2h5oh`, `h2`, or any other lower-case name) and must hold a `GasSample`.
    """

    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)
    __pydantic_extra__: dict[str, GasSample] = Field(init=False)  # type: ignore[assignment]

    groupid: Text
    gps: str | None = Field(default=None, max_length=64, examples=["37.61002501514269, 126.99636868892937"])
    deviceid: Text | None = None

    @field_validator("gps")
    @classmethod
    def _gps_is_lat_lon(cls, value: str | None) -> str | None:
        if value is not None:
            parse_gps(value)
        return value

    @model_validator(mode="after")
    def _has_gases_with_valid_names(self) -> ReadingDocument:
        gases = self.gases
        if not gases:
            raise ValueError("has no gas readings (expected keys such as co, no2, c2h5oh, h2)")
        for name in gases:
            if not re.fullmatch(GAS_NAME_PATTERN, name):
                raise ValueError(f"'{name}' is not a gas name (lower-case letters, digits, _)")
        return self

    @property
    def gases(self) -> dict[str, GasSample]:
        return dict(self.__pydantic_extra__ or {})


def parse_gps(value: str) -> tuple[float, float]:
    """Parse the seed's `"lat, lon"` text into numbers, raising ValueError when out of range."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2:
        raise ValueError("must be 'latitude, longitude'")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("must be 'latitude, longitude' in decimal degrees") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("latitude must be within -90..90 and longitude within -180..180")
    return lat, lon


class Reading(GasmonModel):
    """One validated gas reading, normalised: what is stored and what thresholds see."""

    model_config = ConfigDict(frozen=True)

    reading_id: str
    groupid: str
    deviceid: str | None = None  # sent by devices that share a groupid; alarms key on it when present
    gps: str | None = None
    lat: float | None = None
    lon: float | None = None
    gas: str
    sensorid: str
    sensortype: str
    value: float
    createdtime: str  # exactly as the device sent it
    created_at: datetime  # timezone-aware UTC
    received_at: datetime  # timezone-aware UTC

    @property
    def device(self) -> str:
        """The key the dashboard and queries group readings by (see `device_key`)."""
        return device_key(self.groupid, self.deviceid)


def device_key(groupid: str, deviceid: str | None) -> str:
    """Which device a reading came from: its `deviceid` if the document sent one, else its group.

    A seed Pi posts one document per sample with one `groupid` and a sensor per gas, so the group
    is the device (presence finds a Pi's readings by a group named like its thing, alarms key on
    `deviceid or groupid` too). Pis that share a group tell themselves apart with `deviceid`
    (their IoT thing name), which is also how the dashboard joins them to presence.
    """
    return deviceid or groupid


class Problem(GasmonModel):
    """One thing wrong with a request, named by the path of the field."""

    path: str
    problem: str


class ErrorBody(GasmonModel):
    """The JSON body of every 4xx/5xx answer gasmon gives."""

    error: str
    code: str
    details: list[Problem] = Field(default_factory=list)


class WarningMessage(GasmonModel):
    """What a threshold crossing publishes on the warning topic.

    `warning` keeps the seed's exact text (`"no2 warning"`) so a seed `sub.py` still matches it;
    the other fields are for consumers that want to act on it.
    """

    warning: str
    gas: str
    value: float
    threshold: float
    sensorid: str
    groupid: str
    createdtime: str
    gps: str | None = None
    level: Literal["warning", "critical"] = "warning"


ReadingStatus = Literal["accepted", "duplicate"]


class ReadingOutcome(GasmonModel):
    gas: str
    id: str
    status: ReadingStatus


class DocumentOutcome(GasmonModel):
    """What happened to one posted document."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    readings: list[ReadingOutcome] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    details: list[Problem] = Field(default_factory=list)


class IngestResponse(GasmonModel):
    """The 200 answer to a POST of readings."""

    accepted: int
    duplicates: int
    rejected: int
    warnings: int
    results: list[DocumentOutcome]


class StoreOutcome(GasmonModel):
    """Which of the readings handed to a store were new and which it already had."""

    created: frozenset[str]
    existing: frozenset[str]


# The request body of POST /readings: one document, or a batch of up to 500.
ReadingPost = ReadingDocument | list[ReadingDocument]


# ---- Presence --------------------------------------------------------------------------------
# The AWS IoT lifecycle event (`$aws/events/presence/{connected,disconnected}/<clientId>`), the
# Last Will message of seed 001, the presence check put on the SQS delay queue, the state kept
# per client id, and the email sent through SNS.

PresenceStatus = Literal["connected", "disconnected"]
NoticeKind = Literal["alert", "reconnect"]
ANY_REASON = "*"  # in ALERT_REASONS: every unexpected disconnect reason alerts
MAX_CHECK_DELAY_SECONDS = 900  # SQS DelaySeconds cannot exceed 15 minutes


class LifecycleEvent(GasmonModel):
    """One AWS IoT connect/disconnect lifecycle event, as the IoT rule's `SELECT *` hands it over.

    Field names follow AWS (`clientId`, `sessionIdentifier`, ...); `timestamp` is epoch
    milliseconds. Only disconnect events carry `clientInitiatedDisconnect` and
    `disconnectReason`; only connect events carry `ipAddress`. `thingName` is present only for
    clients using AWS IoT's exclusive-thing feature.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    client_id: str = Field(alias="clientId", min_length=1, max_length=128)
    timestamp: int = Field(ge=0, le=10**15, description="epoch milliseconds")
    event_type: Literal["connected", "disconnected"] = Field(alias="eventType")
    version_number: int = Field(default=0, alias="versionNumber", ge=0)
    session_identifier: str | None = Field(default=None, alias="sessionIdentifier", max_length=256)
    principal_identifier: str | None = Field(default=None, alias="principalIdentifier", max_length=512)
    client_initiated_disconnect: bool | None = Field(default=None, alias="clientInitiatedDisconnect")
    disconnect_reason: str | None = Field(default=None, alias="disconnectReason", min_length=1, max_length=64)
    ip_address: str | None = Field(default=None, alias="ipAddress", max_length=64)
    thing_name: str | None = Field(default=None, alias="thingName", min_length=1, max_length=128)

    @field_validator("timestamp", "version_number", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a whole number, not a boolean")
        return value

    @field_validator("disconnect_reason", mode="before")
    @classmethod
    def _reason_upper_case(cls, value: Any) -> Any:
        # AWS sends upper-case names (CONNECTION_LOST); a local broker may not.
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def occurred_at(self) -> datetime:
        return datetime_from_ms(self.timestamp)

    @property
    def device_name(self) -> str:
        """The thing name when AWS IoT sent one, else the client id (gasmon's device policy makes
        a device connect under its thing name, so the two are the same)."""
        return self.thing_name or self.client_id


def datetime_from_ms(milliseconds: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=milliseconds)


def ms_from_datetime(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds (the inverse of `datetime_from_ms`)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LastWillMessage(GasmonModel):
    """The Last Will the Pi registers (seed 001): `{"state":{"reported":{"connected":"false"}}}`
    on `my/things/<thing>/update`, republished by an IoT rule into the thing's shadow."""

    class _State(GasmonModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        reported: dict[str, Any]

    model_config = ConfigDict(extra="forbid", frozen=True)
    state: _State


class NoticeClaim(GasmonModel):
    """Who is sending (or has sent) one kind of email for one disconnect episode."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    token: str
    claimed_at: datetime
    sent_at: datetime | None = None


class PresenceState(GasmonModel):
    """What gasmon knows about one client id: the newest lifecycle event applied, when its current
    (or last) session started, its last disconnect (the current episode) and the notices claimed."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    thing_name: str
    status: PresenceStatus
    event_order: str
    event_at: datetime
    session_id: str | None = None
    ip_address: str | None = None
    connected_at: datetime | None = None
    connected_session: str | None = None
    disconnected_at: datetime | None = None
    disconnect_reason: str | None = None
    client_initiated: bool | None = None
    episode_id: str | None = None
    alert: NoticeClaim | None = None
    reconnect: NoticeClaim | None = None


class RecordOutcome(GasmonModel):
    """What recording one lifecycle event did: whether it moved the state, and the state now."""

    model_config = ConfigDict(frozen=True)

    applied: bool
    state: PresenceState


class CheckRequest(GasmonModel):
    """The body of a message on the presence-check queue: "look at this device again at `due_at`"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: str = Field(min_length=1, max_length=128)
    thing_name: str = Field(min_length=1, max_length=128)
    episode_id: str = Field(min_length=1, max_length=128)
    disconnected_at_ms: int = Field(ge=0)
    due_at_ms: int = Field(ge=0)
    reason: str | None = None

    @property
    def due_at(self) -> datetime:
        return datetime_from_ms(self.due_at_ms)


class DeviceInfo(GasmonModel):
    """What gasmon's readings say about a device: its group and where it is."""

    model_config = ConfigDict(frozen=True)

    groupid: str
    gps: str | None = None
    last_reading_at: datetime | None = None


class Email(GasmonModel):
    """One notification email. SNS wants the subject in printable ASCII and under 100 characters,
    so the subject is made safe here rather than rejected."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(min_length=1, max_length=99)
    body: str = Field(min_length=1)

    @field_validator("subject", mode="before")
    @classmethod
    def _sns_safe_subject(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = "".join(ch if " " <= ch <= "~" else "?" for ch in value).strip()
            if len(value) > 99:
                value = value[:96].rstrip() + "..."
        return value


# ---- Alarms: messages, episodes, per-(device, gas) state, threshold overrides ----

AlarmLevel = Literal["warning", "critical"]


class AlarmMessage(WarningMessage):
    """An alarm's `open`, `escalate` or `remind` message on the warning topic.

    Every field of the plain `WarningMessage` stays, so a seed `sub.py` still sees
    `{"warning": "no2 warning"}`; `threshold` is the level the alarm is at (warning or critical),
    `peak` the highest value of the episode so far, `alarm_id` names the episode.
    """

    event: Literal["open", "escalate", "remind"]
    alarm_id: str
    device: str
    peak: float
    started_at: datetime


class ClearMessage(GasmonModel):
    """The message that ends an alarm episode: `{"clear": "no2 clear", "event": "clear", ...}`.

    It has no `warning` key on purpose: a seed `sub.py` that reacts to `warning` does not mistake
    the all-clear for another warning.
    """

    clear: str
    event: Literal["clear"] = "clear"
    alarm_id: str
    device: str
    gas: str
    level: AlarmLevel  # the highest level the episode reached
    value: float  # the reading that cleared it
    threshold: float  # the warning level
    clear_below: float  # warning level minus the hysteresis band
    peak: float
    started_at: datetime
    ended_at: datetime
    sensorid: str
    groupid: str
    createdtime: str
    gps: str | None = None


class AlarmEpisode(GasmonModel):
    """One alarm from open to clear (`ended_at` is None while it is open): the alarm history."""

    model_config = ConfigDict(frozen=True)

    alarm_id: str
    device: str
    groupid: str
    gas: str
    sensorid: str
    level: AlarmLevel  # the highest level reached
    threshold: float  # the warning level when it opened
    started_at: datetime
    ended_at: datetime | None = None
    peak: float
    peak_at: datetime
    critical: float | None = None  # the critical level in force (None: the gas has none, or not recorded)

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class AlarmPage(GasmonModel):
    """One page of alarm history, newest first; pass `next_cursor` back for the next page."""

    items: list[AlarmEpisode]
    next_cursor: str | None = None


class OpenAlarm(GasmonModel):
    """The open episode inside an `AlarmState`, with what the clear rule needs to remember."""

    model_config = ConfigDict(frozen=True)

    alarm_id: str
    groupid: str
    sensorid: str
    level: AlarmLevel
    threshold: float  # the warning level when it opened
    started_at: datetime
    peak: float
    peak_at: datetime
    last_notified_at: datetime  # reading time of the last open/escalate/remind message
    below_count: int = 0  # consecutive readings below the clear line
    below_since: datetime | None = None  # reading time of the first of them
    critical: float | None = None  # the critical level when it opened (or escalated); None: no escalation

    def episode(self, device: str, gas: str, ended_at: datetime | None = None) -> AlarmEpisode:
        return AlarmEpisode(
            alarm_id=self.alarm_id,
            device=device,
            groupid=self.groupid,
            gas=gas,
            sensorid=self.sensorid,
            level=self.level,
            threshold=self.threshold,
            started_at=self.started_at,
            ended_at=ended_at,
            peak=self.peak,
            peak_at=self.peak_at,
            critical=self.critical,
        )


class OwedMessage(GasmonModel):
    """A message whose publish failed after its state was written; sent again on the next reading."""

    model_config = ConfigDict(frozen=True)

    topic: str
    payload: dict[str, Any]
    attempts: int = 1


class AlarmState(GasmonModel):
    """Everything remembered for one (device, gas): the open alarm, if any, and owed messages.

    `watermark` is the reading time of the newest reading that changed this state; readings older
    than it are ignored. `version` is the store's optimistic-concurrency counter (0: never saved).
    """

    model_config = ConfigDict(frozen=True)

    device: str
    gas: str
    version: int = 0
    watermark: datetime | None = None
    alarm: OpenAlarm | None = None
    owed: tuple[OwedMessage, ...] = ()


class GasThresholds(GasmonModel):
    """Per-gas levels an operator sets for a group or a device; a field left out is inherited."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    warning: float | None = Field(default=None, gt=0)
    critical: float | None = Field(default=None, gt=0)
    band: float | None = Field(default=None, ge=0)


class AlarmOutcome(GasmonModel):
    """What alarm evaluation did for one POST (for the HTTP answer, metrics and logs)."""

    labels: dict[str, list[str]] = Field(default_factory=dict)  # reading_id -> published labels
    published: int = 0  # messages handed to the broker, redeliveries included
    failed: int = 0  # publishes that failed (owed for a later request, or lost)
    lost: int = 0  # messages given up on: out of attempts, or the store could not record them
    conflicts: int = 0  # version conflicts met (each one re-read and re-applied)
    degraded: int = 0  # (device, gas) keys that fell back to plain threshold warnings
    problems: list[str] = Field(default_factory=list)


# ---- Query API (GET /series, /devices, /warnings, /alerts) ----


class SeriesQuery(GasmonModel):
    """What one time series covers: a gas, a half-open time range, a bucket width, filters."""

    model_config = ConfigDict(frozen=True)

    gas: str
    start: datetime  # inclusive, aware UTC, aligned to `interval`
    end: datetime  # exclusive, aware UTC
    interval_seconds: int = Field(gt=0)
    groupid: str | None = None
    sensorid: str | None = None
    deviceid: str | None = None


class BucketStats(GasmonModel):
    """Statistics of the readings in one non-empty bucket, as a store computes them."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    count: int
    avg: float
    min: float
    max: float


class SeriesPoint(GasmonModel):
    """One bucket of a series; `avg`, `min` and `max` are null when it holds no reading."""

    start: datetime
    count: int
    avg: float | None = None
    min: float | None = None
    max: float | None = None


class SeriesResponse(GasmonModel):
    """The 200 answer to GET /series: every bucket of the range, oldest first."""

    gas: str
    interval: str
    start: datetime
    end: datetime
    threshold: float | None = Field(description="The gas's warning threshold, null when it has none")
    groupid: str | None = None
    sensorid: str | None = None
    deviceid: str | None = None
    points: list[SeriesPoint]


class GasValue(GasmonModel):
    """The latest value of one gas on one device."""

    model_config = ConfigDict(frozen=True)

    value: float
    at: datetime
    sensorid: str
    createdtime: str


class DeviceLatest(GasmonModel):
    """What the store knows of one device: its latest value per gas, group, location, last seen."""

    model_config = ConfigDict(frozen=True)

    device: str
    deviceid: str | None = None
    groupid: str
    gps: str | None = None
    lat: float | None = None
    lon: float | None = None
    last_seen: datetime
    values: dict[str, GasValue]


DeviceState = Literal["online", "offline"]


class DeviceStatus(GasmonModel):
    """A device's connection state as presence last recorded it (keyed by MQTT client id)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    state: DeviceState
    since: datetime | None = None  # when it entered this state
    reason: str | None = None  # the disconnect reason, when offline


class DisconnectAlert(GasmonModel):
    """A disconnect that presence alerted on (an e-mail went out)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    disconnected_at: datetime
    alerted_at: datetime | None = None
    reason: str | None = None
    reconnected_at: datetime | None = None


class DeviceView(GasmonModel):
    """One row of the device table: latest readings joined with presence."""

    device: str
    deviceid: str | None = None
    groupid: str | None = None
    gps: str | None = None
    lat: float | None = None
    lon: float | None = None
    last_seen: datetime | None = Field(description="Time of the latest reading; null if it never posted one")
    values: dict[str, GasValue] = Field(default_factory=dict)
    over_threshold: list[str] = Field(
        default_factory=list, description="Gases whose latest value is at or above the threshold"
    )
    status: Literal["online", "offline", "unknown"] = Field(
        description="From presence; `unknown` when presence has no record of the device or is not configured"
    )
    status_since: datetime | None = None
    disconnect_reason: str | None = None


class DevicePage(GasmonModel):
    """The 200 answer to GET /devices, sorted by device; pass `next_cursor` back as `cursor`."""

    devices: list[DeviceView]
    presence: bool = Field(description="Whether a presence source is configured")
    next_cursor: str | None = None


class WarningItem(GasmonModel):
    """A reading at or above its gas's threshold."""

    reading_id: str
    device: str
    deviceid: str | None = None
    groupid: str
    sensorid: str
    gas: str
    value: float
    threshold: float
    at: datetime
    createdtime: str
    gps: str | None = None


class WarningPage(GasmonModel):
    """The 200 answer to GET /warnings, newest first; pass `next_cursor` back as `cursor`."""

    warnings: list[WarningItem]
    since: datetime
    thresholds: dict[str, float]
    next_cursor: str | None = None


class AlertPage(GasmonModel):
    """The 200 answer to GET /alerts, newest first; `presence` is false when none is configured."""

    alerts: list[DisconnectAlert]
    since: datetime
    presence: bool
    next_cursor: str | None = None


AlarmStateFilter = Literal["open", "closed", "all"]


class AlarmView(GasmonModel):
    """One alarm episode as GET /alarms shows it: from open to clear, with its peak."""

    alarm_id: str
    device: str
    groupid: str
    sensorid: str
    gas: str
    state: Literal["open", "closed"]
    level: AlarmLevel = Field(description="The highest level the episode reached")
    started_at: datetime
    ended_at: datetime | None = Field(description="When the alarm cleared; null while it is open")
    peak: float = Field(description="The highest value of the episode (so far, while open)")
    peak_at: datetime
    threshold: float = Field(description="The warning level when the alarm opened")
    critical: float | None = Field(
        default=None, description="The critical level in force; null when the gas has none or it was not recorded"
    )

    @classmethod
    def of(cls, episode: AlarmEpisode) -> AlarmView:
        return cls(**episode.model_dump(), state="open" if episode.is_open else "closed")


class AlarmHistoryPage(GasmonModel):
    """The 200 answer to GET /alarms, newest first; `configured` is false when no alarm table is set."""

    alarms: list[AlarmView]
    configured: bool = Field(description="Whether this API has an alarm table; false: no alarm history to show")
    state: AlarmStateFilter
    since: datetime | None = Field(description="Earliest start listed; null: every alarm open now")
    until: datetime | None = None
    next_cursor: str | None = None
