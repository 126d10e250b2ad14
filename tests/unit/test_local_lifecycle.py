"""AWS IoT lifecycle events as the local broker publishes them (gasmon_local.lifecycle)."""

from pathlib import Path

import pytest

from gasmon_local import lifecycle


def test_connected_event_has_aws_fields() -> None:
    topic, event = lifecycle.connected_event("rpi-1", "s1", "anonymous", "10.0.0.7", 1573002230757, 3)
    assert topic == "$aws/events/presence/connected/rpi-1"
    assert event == {
        "clientId": "rpi-1",
        "timestamp": 1573002230757,
        "eventType": "connected",
        "sessionIdentifier": "s1",
        "principalIdentifier": "anonymous",
        "ipAddress": "10.0.0.7",
        "versionNumber": 3,
    }


@pytest.mark.parametrize(
    ("reason", "client_initiated"),
    [
        (lifecycle.CLIENT_INITIATED_DISCONNECT, True),
        (lifecycle.CONNECTION_LOST, False),
        (lifecycle.MQTT_KEEP_ALIVE_TIMEOUT, False),
        (lifecycle.DUPLICATE_CLIENTID, False),
    ],
)
def test_only_a_disconnect_packet_is_client_initiated(reason: str, client_initiated: bool) -> None:
    topic, event = lifecycle.disconnected_event("rpi-1", "s1", "anonymous", reason, 1, 0)
    assert topic == "$aws/events/presence/disconnected/rpi-1"
    assert event["disconnectReason"] == reason
    assert event["clientInitiatedDisconnect"] is client_initiated
    assert "ipAddress" not in event


@pytest.mark.parametrize(("client_id", "has_events"), [("rpi-1", True), ("a+b", False), ("a#", False), ("", False)])
def test_client_ids_with_wildcards_get_no_events(client_id: str, has_events: bool) -> None:
    assert lifecycle.has_lifecycle_events(client_id) is has_events


def test_versions_grow_per_client_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "versions.json"
    counter = lifecycle.VersionCounter(path)
    assert [counter.next("a"), counter.next("a"), counter.next("b")] == [0, 1, 0]
    assert lifecycle.VersionCounter(path).next("a") == 2
