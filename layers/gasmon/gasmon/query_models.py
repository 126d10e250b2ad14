"""The query API's response models (GET /series, /devices, /warnings, /alerts, /alarms).

Apart from gasmon.models so that the ingest and presence functions do not build them at cold start;
the store-level shapes every reading store returns (SeriesQuery, BucketStats, GasValue,
DeviceLatest) stay in gasmon.models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from gasmon.models import AlarmEpisode, AlarmLevel, GasmonModel, GasValue

# ---- Query API responses ----


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
    device: str | None = Field(default=None, description="The device filter, as GET /devices names devices")
    points: list[SeriesPoint]


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


class GasLevels(GasmonModel):
    """What the dashboard needs to label and line one gas's chart."""

    unit: str = Field(description="The unit the gas's values are in, such as ppm or ppb")
    warning: float | None = Field(description="The warning level (THRESHOLDS); null when the gas has none")
    critical: float | None = Field(
        description="The critical level (CRITICAL_THRESHOLDS); null when the gas has none or there is no alarm table"
    )


class DashboardConfig(GasmonModel):
    """The 200 answer to GET /config: the deployment's time zone, units and alarm levels."""

    local_timezone: str = Field(description="The deployment's LocalTimezone (IANA name), as devices' times are read")
    gases: dict[str, GasLevels]
    alarms: bool = Field(description="Whether this API has alarm history (an alarm table)")
