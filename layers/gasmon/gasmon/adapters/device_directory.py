"""Device directories: what gasmon's readings say about a device, for the presence emails.

A device's readings are found by its device key: the `deviceid` the gasmon device agent sends
(its thing name), else the group `DEVICE_GROUPS` maps its thing name to, else a group named like
the thing or its client id (a seed Pi sends only `groupid`).
In AWS no directory is configured (readings live in OpenSearch) and emails say the group is not
known; `make local` points it at the SQLite reading store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from gasmon.models import DeviceInfo, Reading

if TYPE_CHECKING:
    from gasmon.ports import DeviceDirectory
    from gasmon.settings import PresenceSettings


class _LatestReadings(Protocol):
    def latest_reading(self, devices: Sequence[str]) -> Reading | None: ...


class NullDeviceDirectory:
    """A `DeviceDirectory` that knows nothing (no reading store configured)."""

    def describe(self, client_id: str, thing_name: str) -> DeviceInfo | None:
        return None


class ReadingsDeviceDirectory:
    """A `DeviceDirectory` over a reading store that can return a group's latest reading."""

    def __init__(self, store: _LatestReadings, device_groups: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.device_groups = dict(device_groups or {})

    def groups_for(self, client_id: str, thing_name: str) -> list[str]:
        """The device keys that may be this device's readings, most specific first."""
        mapped = self.device_groups.get(thing_name) or self.device_groups.get(client_id)
        return list(dict.fromkeys([thing_name, client_id, *([mapped] if mapped else [])]))

    def describe(self, client_id: str, thing_name: str) -> DeviceInfo | None:
        """Group and location of the device's newest reading; None if none (or the store fails)."""
        try:
            reading = self.store.latest_reading(self.groups_for(client_id, thing_name))
        except sqlite3.Error:
            return None  # an email without the group beats no email
        if reading is None:
            return None
        return DeviceInfo(groupid=reading.groupid, gps=reading.gps, last_reading_at=reading.created_at)


def build_device_directory(settings: PresenceSettings) -> DeviceDirectory:
    """The directory the settings name (`DEVICE_DIRECTORY`: none or sqlite)."""
    if settings.device_directory == "sqlite":
        from gasmon.adapters.sqlite_store import SqliteReadingStore

        return ReadingsDeviceDirectory(SqliteReadingStore(settings.sqlite_path), settings.device_groups)
    return NullDeviceDirectory()
