"""Pydantic models for everything that crosses a boundary of gasmon.

The wire shapes follow the seed documents (a Pi's `pub.py` POST, the `pi/1` warning, the IoT
lifecycle event) so that devices written against the seeds work unchanged.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KNOWN_GASES: tuple[str, ...] = ("co", "no2", "c2h5oh", "h2")
GAS_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Top-level keys of a reading document that describe the device, not a gas.
DEVICE_FIELDS: frozenset[str] = frozenset({"groupid", "gps", "deviceid"})


def _as_text(value: Any) -> Any:
    """Accept ids sent as numbers (`"sensorid": 5`) by turning them into text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, Field(min_length=1, max_length=64)]


class GasSample(BaseModel):
    """One gas sensor's sample as the Pi sends it (values may be strings, as in the seed)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sensorid: Text
    sensortype: Text
    value: float
    createdtime: str = Field(min_length=1, max_length=64)

    _text = field_validator("sensorid", "sensortype", mode="before")(_as_text)

    @field_validator("createdtime")
    @classmethod
    def _createdtime_is_a_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("is not a time (use 'YYYY-MM-DD HH:MM:SS' or ISO-8601)") from None
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError("must be a number (for example 26.20)") from None
        return value

    @field_validator("value")
    @classmethod
    def _value_is_finite_and_not_negative(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number (NaN and Infinity are not readings)")
        if value < 0:
            raise ValueError("must not be negative")
        return value


class ReadingDocument(BaseModel):
    """One document as the seed's `pub.py` posts it: device fields plus one object per gas.

    Every top-level key other than `groupid`, `gps` and `deviceid` names a gas (`co`, `no2`,
    `c2h5oh`, `h2`, or any other lower-case name) and must hold a `GasSample`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, GasSample] = Field(init=False)  # type: ignore[assignment]

    groupid: Text
    gps: str | None = Field(default=None, max_length=64, examples=["37.61002501514269, 126.99636868892937"])
    deviceid: Text | None = None

    _text = field_validator("groupid", "deviceid", mode="before")(_as_text)

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


class Reading(BaseModel):
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


class Problem(BaseModel):
    """One thing wrong with a request, named by the path of the field."""

    path: str
    problem: str


class ErrorBody(BaseModel):
    """The JSON body of every 4xx/5xx answer gasmon gives."""

    error: str
    code: str
    details: list[Problem] = Field(default_factory=list)


class WarningMessage(BaseModel):
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


class ReadingOutcome(BaseModel):
    gas: str
    id: str
    status: ReadingStatus


class DocumentOutcome(BaseModel):
    """What happened to one posted document."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    readings: list[ReadingOutcome] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    details: list[Problem] = Field(default_factory=list)


class IngestResponse(BaseModel):
    """The 200 answer to a POST of readings."""

    accepted: int
    duplicates: int
    rejected: int
    warnings: int
    results: list[DocumentOutcome]


class StoreOutcome(BaseModel):
    """Which of the readings handed to a store were new and which it already had."""

    created: frozenset[str]
    existing: frozenset[str]


# The request body of POST /readings: one document, or a batch of up to 500.
ReadingPost = ReadingDocument | list[ReadingDocument]


# ---- Alarms (issue 7): messages, episodes, per-(device, gas) state, threshold overrides ----

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


class ClearMessage(BaseModel):
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


class AlarmEpisode(BaseModel):
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

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class AlarmPage(BaseModel):
    """One page of alarm history, newest first; pass `next_cursor` back for the next page."""

    items: list[AlarmEpisode]
    next_cursor: str | None = None


class OpenAlarm(BaseModel):
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
        )


class OwedMessage(BaseModel):
    """A message whose publish failed after its state was written; sent again on the next reading."""

    model_config = ConfigDict(frozen=True)

    topic: str
    payload: dict[str, Any]
    attempts: int = 1


class AlarmState(BaseModel):
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


class GasThresholds(BaseModel):
    """Per-gas levels an operator sets for a group or a device; a field left out is inherited."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    warning: float | None = Field(default=None, gt=0)
    critical: float | None = Field(default=None, gt=0)
    band: float | None = Field(default=None, ge=0)


class AlarmOutcome(BaseModel):
    """What alarm evaluation did for one POST (for the HTTP answer, metrics and logs)."""

    labels: dict[str, list[str]] = Field(default_factory=dict)  # reading_id -> published labels
    published: int = 0  # messages handed to the broker, redeliveries included
    failed: int = 0  # publishes that failed (owed for a later request, or lost)
    lost: int = 0  # messages given up on: out of attempts, or the store could not record them
    conflicts: int = 0  # version conflicts met (each one re-read and re-applied)
    degraded: int = 0  # (device, gas) keys that fell back to plain threshold warnings
    problems: list[str] = Field(default_factory=list)
