"""The dashboard's view of presence, read from a DynamoDB table (moto) in presence's item shape.

Items are written as `gasmon.adapters.dynamodb_presence` writes them: flat
attributes, times as epoch milliseconds, notice claims as `alert_*` attributes.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gasmon.adapters.presence_status import DynamoDbDeviceStatusSource
from gasmon.errors import StoreUnavailableError

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def ms(moment: datetime) -> Decimal:
    return Decimal(int(moment.timestamp() * 1000))


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="ap-northeast-2")
        created = dynamodb.create_table(
            TableName="gasmon-presence",
            KeySchema=[{"AttributeName": "client_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "client_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield created


def source(table: Any) -> DynamoDbDeviceStatusSource:
    return DynamoDbDeviceStatusSource("gasmon-presence", region="ap-northeast-2", table_factory=lambda: table)


def test_connected_and_disconnected_devices_read_as_online_and_offline(table: Any) -> None:
    # Given presence recorded pi-1 connected and pi-2 lost
    table.put_item(Item={"client_id": "pi-1", "status": "connected", "connected_at_ms": ms(T0), "event_at_ms": ms(T0)})
    table.put_item(
        Item={
            "client_id": "pi-2",
            "thing_name": "pi-2",
            "status": "disconnected",
            "event_at_ms": ms(T0 + timedelta(minutes=3)),
            "disconnected_at_ms": ms(T0 + timedelta(minutes=3)),
            "disconnect_reason": "CONNECTION_LOST",
            "client_initiated": False,
        }
    )
    table.put_item(Item={"client_id": "junk"})
    # When the dashboard reads the statuses
    statuses = source(table).statuses()
    # Then each device has its state since its last event, and items that are not states are skipped
    assert set(statuses) == {"pi-1", "pi-2"}
    assert (statuses["pi-1"].state, statuses["pi-1"].since) == ("online", T0)
    assert statuses["pi-2"].state == "offline"
    assert statuses["pi-2"].since == T0 + timedelta(minutes=3)
    assert statuses["pi-2"].reason == "CONNECTION_LOST"


def test_only_sent_alerts_are_listed_newest_first_with_reconnects(table: Any) -> None:
    # Given pi-1 alerted and back, pi-2 alerted and still down, pi-3 claimed but not sent
    table.put_item(
        Item={
            "client_id": "pi-1",
            "status": "connected",
            "episode_id": "e1",
            "disconnected_at_ms": ms(T0),
            "connected_at_ms": ms(T0 + timedelta(minutes=10)),
            "disconnect_reason": "MQTT_KEEP_ALIVE_TIMEOUT",
            "alert_episode": "e1",
            "alert_claim": "t",
            "alert_claimed_at_ms": ms(T0),
            "alert_sent_at_ms": ms(T0 + timedelta(minutes=1)),
        }
    )
    table.put_item(
        Item={
            "client_id": "pi-2",
            "status": "disconnected",
            "episode_id": "e2",
            "disconnected_at_ms": ms(T0 + timedelta(minutes=5)),
            "disconnect_reason": "CONNECTION_LOST",
            "alert_episode": "e2",
            "alert_claim": "t",
            "alert_claimed_at_ms": ms(T0),
            "alert_sent_at_ms": ms(T0 + timedelta(minutes=6)),
        }
    )
    table.put_item(
        Item={
            "client_id": "pi-3",
            "status": "disconnected",
            "episode_id": "e3",
            "disconnected_at_ms": ms(T0 + timedelta(minutes=7)),
            "alert_episode": "e3",
            "alert_claim": "t",
            "alert_claimed_at_ms": ms(T0),
        }
    )
    # When the recent alerts are read, one per page
    presence = source(table)
    first = presence.recent_alerts(T0 - timedelta(hours=1), 1)
    second = presence.recent_alerts(T0 - timedelta(hours=1), 5, before=(first[0].disconnected_at, first[0].client_id))
    # Then pi-2 comes first, still down, then pi-1 with its reconnect time; pi-3 sent no mail
    assert [(a.client_id, a.reconnected_at) for a in first + second] == [
        ("pi-2", None),
        ("pi-1", T0 + timedelta(minutes=10)),
    ]
    assert first[0].reason == "CONNECTION_LOST" and first[0].alerted_at == T0 + timedelta(minutes=6)


def test_a_missing_table_is_unavailable_not_a_crash(table: Any) -> None:
    missing = DynamoDbDeviceStatusSource("no-such-table", region="ap-northeast-2")
    with pytest.raises(StoreUnavailableError):
        missing.statuses()


def test_a_kept_alert_is_listed_once_and_wins_when_the_device_has_moved_on(table: Any) -> None:
    # Given pi-1 alerted for e1 (kept), then disconnected again in e2 with no alert yet
    table.put_item(
        Item={
            "client_id": "pi-1",
            "status": "disconnected",
            "episode_id": "e2",
            "disconnected_at_ms": ms(T0 + timedelta(hours=1)),
            "disconnect_reason": "MQTT_KEEP_ALIVE_TIMEOUT",
            "event_at_ms": ms(T0 + timedelta(hours=1)),
            "alert_episode": "e1",
            "alert_sent_at_ms": ms(T0 + timedelta(minutes=1)),
        }
    )
    table.put_item(
        Item={
            "client_id": "alert#pi-1#e1",
            "device": "pi-1",
            "episode_id": "e1",
            "disconnected_at_ms": ms(T0),
            "disconnect_reason": "CONNECTION_LOST",
            "alerted_at_ms": ms(T0 + timedelta(minutes=1)),
        }
    )
    # When the alerts are listed
    alerts = source(table).recent_alerts(T0 - timedelta(days=1), 10)
    # Then e1 appears once, with its own disconnect time and reason (the device item has moved on)
    assert [(a.client_id, a.disconnected_at, a.reason) for a in alerts] == [("pi-1", T0, "CONNECTION_LOST")]
    # And the kept alert is not a device
    assert set(source(table).statuses()) == {"pi-1"}
