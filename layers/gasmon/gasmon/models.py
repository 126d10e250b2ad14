"""Pydantic models of readings and alarms, and the shapes every reading store returns.

The presence models are in `gasmon.presence_models` and the query API's responses in
`gasmon.query_models`, so that each function builds only its own at cold start. The wire shapes
follow the seed documents (a Pi's `pub.py` POST, the `pi/1` warning, the IoT lifecycle event)
so that devices written against the seeds work unchanged.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KNOWN_GASES: tuple[str, ...] = ("co", "no2", "c2h5oh", "h2")
# Gas names: lower case so that `CO` and `co` are never two alarms; a subset of the safe alphabet.
GAS_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Ids that reach MQTT topics, table keys, paths and ARNs (groupid, deviceid, sensorid, thing
# names): only `A-Z a-z 0-9 . _ : -`, 1-64 characters, and not only dots (no `.`/`..` path
# segments). No `/`, `#`, `+`, `$`, `*`, `?`, space or control character can get through.
SAFE_ID_PATTERN = r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"
SAFE_ID_MAX_LENGTH = 64
# The warning topic a deployment may configure (template.yaml's WarningTopic AllowedPattern is this
# exact text; a test pins it): 1-7 levels of safe characters or `{groupid}`, a level never starting
# with a dot, so no `$aws/...` reserved topic, no `#`/`+` wildcard, no empty or `..` level.
_TOPIC_LEVEL = r"(?:[A-Za-z0-9_:-]|\{groupid\})(?:[A-Za-z0-9._:-]|\{groupid\})*"
WARNING_TOPIC_PATTERN = rf"^{_TOPIC_LEVEL}(?:/{_TOPIC_LEVEL}){{0,6}}$"
# Top-level keys of a reading document that describe the device, not a gas.
DEVICE_FIELDS: frozenset[str] = frozenset({"groupid", "gps", "deviceid"})


# Free text (a sensor's type): 1-64 characters, no control characters.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Text = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)]
# An id validated once, here, before it can reach a topic, a key or a path.
SafeId = Annotated[str, Field(min_length=1, max_length=SAFE_ID_MAX_LENGTH, pattern=SAFE_ID_PATTERN)]
GasName = Annotated[str, Field(pattern=GAS_NAME_PATTERN)]  # the pattern bounds the length


def is_safe_id(value: str) -> bool:
    """Whether `value` is an id gasmon lets reach a topic, a key or a path (see SAFE_ID_PATTERN)."""
    return len(value) <= SAFE_ID_MAX_LENGTH and _SAFE_ID.fullmatch(value) is not None


_SAFE_ID = re.compile(SAFE_ID_PATTERN)
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

    sensorid: SafeId
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
    # The key type validates each gas name, so a bad one is reported under its own path.
    __pydantic_extra__: dict[GasName, GasSample] = Field(init=False)  # type: ignore[assignment]

    groupid: SafeId
    gps: str | None = Field(default=None, max_length=64, examples=["37.61002501514269, 126.99636868892937"])
    deviceid: SafeId | None = None

    @field_validator("gps")
    @classmethod
    def _gps_is_lat_lon(cls, value: str | None) -> str | None:
        if value is not None:
            parse_gps(value)
        return value

    @model_validator(mode="after")
    def _has_gases(self) -> ReadingDocument:
        if not self.__pydantic_extra__:
            raise ValueError("has no gas readings (expected keys such as co, no2, c2h5oh, h2)")
        return self

    @property
    def gases(self) -> dict[str, GasSample]:
        return dict(self.__pydantic_extra__ or {})


@lru_cache(maxsize=4096)
def parse_gps(value: str) -> tuple[float, float]:
    """Parse the seed's `"lat, lon"` text into numbers, raising ValueError when out of range.

    Cached: the document validator checks it and ingest then uses the numbers, and a Pi sends the
    same position with every document (a pure function of an immutable string).
    """
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
    # The reading that caused the message: with `alarm_id` (alarms) it is the key a consumer
    # dedupes by, since every message is published at least once, not exactly once.
    reading_id: str | None = None


# accepted: stored now; duplicate: stored before with the same value; conflict: stored before
# with a different value (the stored value stays; the posted one is still checked for warnings);
# rejected: the store refused it for good (the reason is in the document's details).
ReadingStatus = Literal["accepted", "duplicate", "conflict", "rejected"]


class ReadingOutcome(GasmonModel):
    gas: str
    id: str
    status: ReadingStatus


class DocumentOutcome(GasmonModel):
    """What happened to one posted document."""

    index: int
    status: Literal["accepted", "duplicate", "conflict", "rejected"]
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
    conflicts: int = 0


class StoreOutcome(GasmonModel):
    """Which of the readings handed to a store were new, which it already had with the same value
    (`existing`), which it already had with a different value (`conflicts`, a subset of
    `existing`: the stored value is kept), and which it refused for good (`refused`: reading id ->
    why, e.g. a mapping conflict; retrying cannot help)."""

    created: frozenset[str]
    existing: frozenset[str]
    conflicts: frozenset[str] = frozenset()
    refused: dict[str, str] = Field(default_factory=dict)


# The request body of POST /readings: one document, or a batch of up to 500.
ReadingPost = ReadingDocument | list[ReadingDocument]


# Presence settings' limits (the presence models are in gasmon.presence_models).
ANY_REASON = "*"  # in ALERT_REASONS: every unexpected disconnect reason alerts
MAX_CHECK_DELAY_SECONDS = 900  # SQS DelaySeconds cannot exceed 15 minutes


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
    reading_id: str | None = None  # the reading that cleared it (None: the stale sweep closed it)
    reason: Literal["readings", "stale"] = "readings"


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
    """A message in a state's outbox: written with the transition that caused it, removed once
    published, so a request that dies in between leaves it for the next request or the sweep."""

    model_config = ConfigDict(frozen=True)

    topic: str
    payload: dict[str, Any]
    attempts: int = 0  # failed publishes so far
    reading_id: str | None = None  # the reading that caused it (None: the stale sweep)
    label: str = ""  # how a POST's answer lists it (`no2 warning`, `no2 clear`, ...)
    required: bool = True  # False for reminders: a failed one is dropped, the next says the same


class AlarmState(GasmonModel):
    """Everything remembered for one (device, gas): the open alarm, if any, and owed messages.

    `watermark` (+ `watermark_id`) is the position (reading time, reading id) of the newest reading
    applied: while an alarm is open every reading moves it, while closed only a change does.
    Readings at or before it are done (their effects are in this state or in `owed`), so a retried
    POST never applies a reading twice and a late reading never clears or reopens against newer
    data. `owed` is the outbox: messages written with the transition that caused them and removed
    once published. `version` is the store's optimistic-concurrency counter (0: never saved).
    """

    model_config = ConfigDict(frozen=True)

    device: str
    gas: str
    version: int = 0
    watermark: datetime | None = None
    watermark_id: str = ""
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
    pending: int = 0  # messages still owed, or keys whose readings are not applied yet (answer: retry)
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
    device: str | None = None  # a reading's `deviceid`, else its `groupid` (as GET /devices names it)


class BucketStats(GasmonModel):
    """Statistics of the readings in one non-empty bucket, as a store computes them."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    count: int
    avg: float
    min: float
    max: float


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
