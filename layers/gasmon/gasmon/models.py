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


Text = Annotated[str, Field(min_length=1, max_length=64)]


class GasSample(BaseModel):
    """One gas sensor's sample as the Pi sends it (values may be strings, as in the seed).

    Checks run in pydantic's core where they can (this is the ingest hot path); friendly messages
    for its error types are in `gasmon.ingest.PROBLEM_TEXT`.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    sensorid: Text
    sensortype: Text
    value: Annotated[float, Field(ge=0, allow_inf_nan=False)]
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


class ReadingDocument(BaseModel):
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
