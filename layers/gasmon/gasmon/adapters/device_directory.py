"""Device directories: what gasmon's readings say about a device, for the presence emails.

A device's readings are found by its device key: the `deviceid` the gasmon device agent sends
(its thing name), else the group `DEVICE_GROUPS` maps its thing name to, else a group named like
the thing or its client id (a seed Pi sends only `groupid`).
In AWS the directory is the OpenSearch reading index (one `_search` per e-mail); `make local`
points it at the SQLite reading store. If the store cannot answer, the e-mail goes out without
the group: an alert must never wait on the dashboard's data.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from gasmon.errors import StoreUnavailableError
from gasmon.models import Reading
from gasmon.presence_models import DeviceInfo

if TYPE_CHECKING:
    from gasmon.ports import DeviceDirectory
    from gasmon.settings import PresenceSettings

log = logging.getLogger(__name__)


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
        except (sqlite3.Error, StoreUnavailableError) as exc:
            log.warning("device directory unavailable, e-mail for %s goes without its group: %s", client_id, exc)
            return None  # an email without the group beats no email
        if reading is None:
            return None
        return DeviceInfo(groupid=reading.groupid, gps=reading.gps, last_reading_at=reading.created_at)


def build_device_directory(settings: PresenceSettings) -> DeviceDirectory:
    """The registry (`DEVICE_TABLE`) first, then the readings the settings name (`DEVICE_DIRECTORY`)."""
    readings = _readings_directory(settings)
    if not settings.device_table:
        return readings
    from gasmon.adapters.dynamodb_registry import DynamoDbDeviceRegistry, RegistryDeviceDirectory

    return RegistryDeviceDirectory(DynamoDbDeviceRegistry(settings.device_table, settings.aws_region), readings)


def _readings_directory(settings: PresenceSettings) -> DeviceDirectory:
    """The directory over readings (`DEVICE_DIRECTORY`: none, sqlite or opensearch)."""
    if settings.device_directory == "none":
        return NullDeviceDirectory()
    if settings.device_directory == "opensearch" and not settings.opensearch_endpoint:
        log.warning("DEVICE_DIRECTORY is opensearch but OPENSEARCH_ENDPOINT is empty: e-mails go without the group")
        return NullDeviceDirectory()
    from gasmon.adapters import open_reading_store

    return ReadingsDeviceDirectory(open_reading_store(settings.device_directory, settings), settings.device_groups)
