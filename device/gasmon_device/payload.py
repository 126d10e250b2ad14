"""The wire shapes the device speaks: the reading document it posts, and the messages on MQTT.

The shapes are the seeds' (`003`: the `pub.py` document and the `pi/1` warning; `001`: the Last
Will `{"state":{"reported":{"connected":"false"}}}`), so the device and the server agree without
the device importing the server's models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .config import SensorSpec, TimeFormat

# Exactly these bytes: the seed's rule republishes them into the thing shadow.
CONNECTED_PAYLOAD = b'{"state":{"reported":{"connected":"true"}}}'
DISCONNECTED_PAYLOAD = b'{"state":{"reported":{"connected":"false"}}}'


def presence_topic(template: str, thing: str) -> str:
    """`my/things/<thing>/update` from its template."""
    return template.replace("{thing}", thing)


def format_createdtime(moment: datetime, zone: ZoneInfo, time_format: TimeFormat, subsecond: bool = False) -> str:
    """A reading's `createdtime` text.

    `seed` is the seed's zone-less local wall time (`2021-09-03 18:14:49`), which the server reads
    in its own configured zone (Asia/Seoul by default): use it only when both agree. `iso` adds the
    offset (`2021-09-03T18:14:49+09:00`), which is unambiguous everywhere, including across DST.
    `subsecond` keeps milliseconds so that readings taken less than a second apart stay distinct
    (the server deduplicates on group, sensor, gas and time).
    """
    local = moment.astimezone(zone)
    timespec = "milliseconds" if subsecond else "seconds"
    if time_format == "seed":
        return local.replace(tzinfo=None).isoformat(sep=" ", timespec=timespec)
    return local.isoformat(timespec=timespec)


def format_value(value: float) -> str:
    """The seed sends values as text with two decimals (`"26.20"`)."""
    if not math.isfinite(value):
        return str(value)  # the server rejects it with a reason; it ends up in the dead letters
    return f"{value:.2f}"


def build_document(
    *,
    groupid: str,
    gps: str,
    sensors: Sequence[SensorSpec],
    values: Mapping[str, float | None],
    createdtime: str,
    deviceid: str = "",
) -> dict[str, Any] | None:
    """One reading document as the seed's `pub.py` posts it, or None when no sensor gave a value.

    `deviceid` (the thing name) is gasmon's optional addition: it tells apart Pis that share a
    group and joins the readings to the device's presence on the dashboard and in alert emails.
    """
    document: dict[str, Any] = {"groupid": groupid}
    if deviceid:
        document["deviceid"] = deviceid
    if gps:
        document["gps"] = gps
    for spec in sensors:
        value = values.get(spec.gas)
        if value is None:
            continue
        document[spec.gas] = {
            "sensorid": spec.sensorid,
            "sensortype": spec.sensortype,
            "value": format_value(value),
            "createdtime": createdtime,
        }
    if len(document) == 1 + bool(gps) + bool(deviceid):
        return None
    return document


def encode_document(document: Mapping[str, Any]) -> str:
    """Compact JSON text, as queued and as sent inside a batch."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class WarningAlert:
    """A threshold warning received on the warning topic.

    `warning` is the seed's text (`"no2 warning"`); the other fields are filled when the server
    sends them (gasmon does) and None for a bare seed-style `{"warning": "no2 warning"}`.
    """

    warning: str
    gas: str | None = None
    value: float | None = None
    threshold: float | None = None
    sensorid: str | None = None
    groupid: str | None = None
    createdtime: str | None = None
    gps: str | None = None
    level: str = "warning"
    topic: str = ""

    def describe(self) -> str:
        """One readable line for the log."""
        parts = [self.warning]
        if self.value is not None:
            parts.append(f"value {self.value:g}" + (f" >= {self.threshold:g}" if self.threshold is not None else ""))
        if self.groupid is not None:
            parts.append(f"group {self.groupid}")
        if self.sensorid is not None:
            parts.append(f"sensor {self.sensorid}")
        if self.createdtime:
            parts.append(f"at {self.createdtime}")
        return ", ".join(parts)


class NotAWarningError(ValueError):
    """The MQTT message is not a warning (a status message, or not JSON at all)."""


def _optional_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def parse_warning(payload: bytes, topic: str = "") -> WarningAlert:
    """Parse a message from the warning topic; raise `NotAWarningError` for anything else."""
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotAWarningError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("warning"), str) or not data["warning"]:
        raise NotAWarningError("no 'warning' field")
    level = data.get("level")
    return WarningAlert(
        warning=data["warning"],
        gas=_optional_text(data, "gas"),
        value=_optional_float(data, "value"),
        threshold=_optional_float(data, "threshold"),
        sensorid=_optional_text(data, "sensorid"),
        groupid=_optional_text(data, "groupid"),
        createdtime=_optional_text(data, "createdtime"),
        gps=_optional_text(data, "gps"),
        level=level if isinstance(level, str) else "warning",
        topic=topic,
    )
