"""Reading identity and the plain threshold check, shared by ingest and alarms.

Both use cases import this module and neither imports the other: what makes two posts the same
reading, which device a reading belongs to, and whether a value is over its level are decided here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from gasmon.defaults import DEFAULT_CRITICAL_THRESHOLDS, DEFAULT_THRESHOLDS
from gasmon.models import Reading, WarningMessage, is_safe_id

__all__ = [
    "DEFAULT_CRITICAL_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
    "device_of",
    "reading_id",
    "warning_topic",
    "warnings_for",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def reading_id(groupid: str, sensorid: str, gas: str, created_at: datetime, deviceid: str | None = None) -> str:
    """The deterministic id that makes a retried POST land on the same stored reading.

    32 hex characters: the reading time (UTC microseconds) then a hash of the device, sensor and
    gas. Leading with time keeps new ids at the right edge of the stores' indexes, so a batch
    touches a few index pages instead of one random page per reading. A `deviceid`, when sent,
    is part of the key, so two Pis of one group with the same sensor ids never collide.
    """
    micros = (created_at - _EPOCH) // _MICROSECOND  # exact, whatever the zone
    return f"{micros:016x}{_sensor_digest(groupid, sensorid, gas, deviceid)}"


@lru_cache(maxsize=4096)
def _sensor_digest(groupid: str, sensorid: str, gas: str, deviceid: str | None) -> str:
    """The id's second half: a pure function of four strings, and a Pi posts the same four with
    every document, so it is cached (a hash per reading was a tenth of the warm path)."""
    device = f"\x1f{deviceid}" if deviceid else ""
    return hashlib.sha256(f"{groupid}\x1f{sensorid}\x1f{gas}{device}".encode()).hexdigest()[:16]


def warnings_for(readings: Sequence[Reading], thresholds: Mapping[str, float]) -> list[WarningMessage]:
    """A warning for every reading at or above its gas's threshold (no threshold, no warning).

    Each carries its `reading_id`: plain warnings are published at least once, and a consumer
    dedupes by it."""
    warnings = []
    for reading in readings:
        threshold = thresholds.get(reading.gas)
        if threshold is not None and reading.value >= threshold:
            warnings.append(
                WarningMessage(
                    warning=f"{reading.gas} warning",
                    gas=reading.gas,
                    value=reading.value,
                    threshold=threshold,
                    sensorid=reading.sensorid,
                    groupid=reading.groupid,
                    createdtime=reading.createdtime,
                    gps=reading.gps,
                    reading_id=reading.reading_id,
                )
            )
    return warnings


class UnsafeIdError(ValueError):
    """An id outside the safe alphabet was about to become part of a topic (a bug: models validate ids)."""


def warning_topic(template: str, groupid: str) -> str:
    """The topic a warning goes to: the template with `{groupid}` filled in.

    Only a safe id (`gasmon.models.SAFE_ID_PATTERN`) is ever put into a topic: the models validate
    every posted id, and this check keeps any other caller from building a topic out of anything else.
    """
    if "{groupid}" not in template:
        return template
    if not is_safe_id(groupid):
        raise UnsafeIdError(f"{groupid!r} is not a safe id; it cannot name a topic")
    return template.replace("{groupid}", groupid)


def device_of(reading: Reading) -> str:
    """The device an alarm belongs to: `deviceid` when the document sent one, else its `groupid`."""
    device: str = reading.deviceid or reading.groupid
    return device
