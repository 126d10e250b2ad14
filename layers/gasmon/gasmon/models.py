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
    deviceid: str | None = None  # the Pi's id (its IoT thing name) when the document names it

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


# ---- Query API (GET /series, /devices, /warnings, /alerts) ----


class SeriesQuery(BaseModel):
    """What one time series covers: a gas, a half-open time range, a bucket width, filters."""

    model_config = ConfigDict(frozen=True)

    gas: str
    start: datetime  # inclusive, aware UTC, aligned to `interval`
    end: datetime  # exclusive, aware UTC
    interval_seconds: int = Field(gt=0)
    groupid: str | None = None
    sensorid: str | None = None
    deviceid: str | None = None


class BucketStats(BaseModel):
    """Statistics of the readings in one non-empty bucket, as a store computes them."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    count: int
    avg: float
    min: float
    max: float


class SeriesPoint(BaseModel):
    """One bucket of a series; `avg`, `min` and `max` are null when it holds no reading."""

    start: datetime
    count: int
    avg: float | None = None
    min: float | None = None
    max: float | None = None


class SeriesResponse(BaseModel):
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


class GasValue(BaseModel):
    """The latest value of one gas on one device."""

    model_config = ConfigDict(frozen=True)

    value: float
    at: datetime
    sensorid: str
    createdtime: str


class DeviceLatest(BaseModel):
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


class DeviceStatus(BaseModel):
    """A device's connection state as presence last recorded it (keyed by MQTT client id)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    state: DeviceState
    since: datetime | None = None  # when it entered this state
    reason: str | None = None  # the disconnect reason, when offline


class DisconnectAlert(BaseModel):
    """A disconnect that presence alerted on (an e-mail went out)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    disconnected_at: datetime
    alerted_at: datetime | None = None
    reason: str | None = None
    reconnected_at: datetime | None = None


class DeviceView(BaseModel):
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


class DevicePage(BaseModel):
    """The 200 answer to GET /devices, sorted by device; pass `next_cursor` back as `cursor`."""

    devices: list[DeviceView]
    presence: bool = Field(description="Whether a presence source is configured")
    next_cursor: str | None = None


class WarningItem(BaseModel):
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


class WarningPage(BaseModel):
    """The 200 answer to GET /warnings, newest first; pass `next_cursor` back as `cursor`."""

    warnings: list[WarningItem]
    since: datetime
    thresholds: dict[str, float]
    next_cursor: str | None = None


class AlertPage(BaseModel):
    """The 200 answer to GET /alerts, newest first; `presence` is false when none is configured."""

    alerts: list[DisconnectAlert]
    since: datetime
    presence: bool
    next_cursor: str | None = None
