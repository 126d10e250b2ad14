"""AWS IoT lifecycle events: what the broker publishes when a client connects or disconnects.

The topics and fields are AWS's (see the seeds and the "Lifecycle events" page of the AWS IoT
developer guide): `$aws/events/presence/connected/<clientId>` and `.../disconnected/<clientId>`,
with clientId, timestamp (ms), eventType, sessionIdentifier, principalIdentifier, ipAddress (on
connect), clientInitiatedDisconnect and disconnectReason (on disconnect) and versionNumber.

AWS documents versionNumber as "monotonically increasing for each client ID" so subscribers can
order events that arrive out of order. Here every event of a client id takes the next number
(a connection's disconnected event is higher than its connected event), so "newer timestamp,
then higher version" orders them even within one millisecond. Counters are kept in the data
directory, so numbers keep growing across restarts.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

CLIENT_INITIATED_DISCONNECT = "CLIENT_INITIATED_DISCONNECT"
CONNECTION_LOST = "CONNECTION_LOST"
MQTT_KEEP_ALIVE_TIMEOUT = "MQTT_KEEP_ALIVE_TIMEOUT"
DUPLICATE_CLIENTID = "DUPLICATE_CLIENTID"
CLIENT_ERROR = "CLIENT_ERROR"
SERVER_INITIATED_DISCONNECT = "SERVER_INITIATED_DISCONNECT"
AUTH_ERROR = "AUTH_ERROR"  # a request the client's policies deny (a PUBLISH, here)
AUTHORIZATION_FAILED = "AUTHORIZATION_FAILED"  # connect_failed's failureType


def has_lifecycle_events(client_id: str) -> bool:
    """AWS publishes no lifecycle events for client ids containing `#` or `+`."""
    return bool(client_id) and "#" not in client_id and "+" not in client_id


def connected_event(
    client_id: str, session_id: str, principal: str, ip_address: str, timestamp_ms: int, version: int
) -> tuple[str, dict[str, Any]]:
    """Topic and payload of a connected event."""
    return f"$aws/events/presence/connected/{client_id}", {
        "clientId": client_id,
        "timestamp": timestamp_ms,
        "eventType": "connected",
        "sessionIdentifier": session_id,
        "principalIdentifier": principal,
        "ipAddress": ip_address,
        "versionNumber": version,
    }


def disconnected_event(
    client_id: str, session_id: str, principal: str, reason: str, timestamp_ms: int, version: int
) -> tuple[str, dict[str, Any]]:
    """Topic and payload of a disconnected event; only a DISCONNECT packet is client-initiated."""
    return f"$aws/events/presence/disconnected/{client_id}", {
        "clientId": client_id,
        "timestamp": timestamp_ms,
        "eventType": "disconnected",
        "sessionIdentifier": session_id,
        "principalIdentifier": principal,
        "clientInitiatedDisconnect": reason == CLIENT_INITIATED_DISCONNECT,
        "disconnectReason": reason,
        "versionNumber": version,
    }


def connect_failed_event(
    client_id: str, principal: str, ip_address: str, timestamp_ms: int
) -> tuple[str, dict[str, Any]]:
    """Topic and payload of AWS's "connect failure" event: a CONNECT refused by authorization."""
    return f"$aws/events/presence/connect_failed/{client_id}", {
        "clientId": client_id,
        "timestamp": timestamp_ms,
        "eventType": "connect_failed",
        "failureType": AUTHORIZATION_FAILED,
        "principalIdentifier": principal,
        "ipAddress": ip_address,
    }


class VersionCounter:
    """The next versionNumber per client id, persisted to a small JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        if path is not None and path.exists():
            self._versions = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}

    def next(self, client_id: str) -> int:
        with self._lock:
            version = self._versions.get(client_id, -1) + 1
            self._versions[client_id] = version
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                scratch = self.path.with_suffix(".tmp")
                scratch.write_text(json.dumps(self._versions, sort_keys=True))
                os.replace(scratch, self.path)
            return version
