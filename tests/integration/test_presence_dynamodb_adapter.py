"""The DynamoDB presence repository on moto behaves exactly like the domain's rules
(`apply_event`, `can_claim`): same states for the same deliveries, same claim answers."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gasmon.adapters.dynamodb_presence import DynamoDbPresenceRepository
from gasmon.adapters.presence_items import alert_history_key
from gasmon.adapters.presence_status import DynamoDbDeviceStatusSource
from gasmon.presence import apply_event, can_claim, claimed, marked_sent, order_key
from gasmon.presence_models import LifecycleEvent, NoticeKind, PresenceState, datetime_from_ms

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def lifecycle(name: str, **changes: Any) -> LifecycleEvent:
    raw = json.loads((ROOT / "events" / name).read_text())
    return LifecycleEvent.model_validate(raw | changes)


CONNECTED = lifecycle("presence_connected.json")
LOST = lifecycle("presence_disconnected_lost.json")
CLEAN = lifecycle("presence_disconnected_clean.json")
RECONNECTED = lifecycle("presence_reconnected.json")
KEEPALIVE = lifecycle("presence_keepalive_timeout.json")
NO_SESSION = lifecycle("presence_connected.json", sessionIdentifier=None, ipAddress=None, timestamp=1)


@pytest.fixture
def repository(fake_aws: None) -> Iterator[DynamoDbPresenceRepository]:
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="presence",
            AttributeDefinitions=[{"AttributeName": "client_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "client_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDbPresenceRepository("presence", region=REGION)


def replay(events: list[LifecycleEvent]) -> tuple[list[bool], PresenceState | None]:
    """What the domain says: whether each delivery applied, and the final state."""
    state, applied = None, []
    for event in events:
        outcome = apply_event(state, event)
        state, applied = outcome.state, [*applied, outcome.applied]
    return applied, state


DELIVERIES = {
    "in order": [CONNECTED, LOST, RECONNECTED],
    "duplicate disconnect": [CONNECTED, LOST, LOST],
    "disconnect before its own connect": [LOST, CONNECTED],
    "old disconnect after the reconnect": [CONNECTED, RECONNECTED, LOST],
    "clean then lost of the same instant": [CONNECTED, CLEAN, LOST],
    "two disconnects, newer first": [KEEPALIVE, LOST, CONNECTED],
    "connect without session or address": [NO_SESSION, CONNECTED],
}


@pytest.mark.parametrize("events", DELIVERIES.values(), ids=DELIVERIES.keys())
def test_recorded_state_matches_the_domain_rules(
    repository: DynamoDbPresenceRepository, events: list[LifecycleEvent]
) -> None:
    # Given a sequence of deliveries
    # When the repository records them one by one
    outcomes = [repository.record(event, T0) for event in events]
    # Then each was applied or not, and the state ends, exactly as the domain says
    expected_applied, expected_state = replay(events)
    assert [o.applied for o in outcomes] == expected_applied
    assert outcomes[-1].state == expected_state
    assert repository.get("RPI") == expected_state


def test_unknown_client_has_no_state(repository: DynamoDbPresenceRepository) -> None:
    assert repository.get("nobody") is None


def episode() -> str:
    return order_key(LOST)


STALE_BEFORE = T0  # claims made before T0 count as stale
FRESH = T0 + timedelta(seconds=1)
OLD = T0 - timedelta(minutes=5)

# (kind, setup claims [(kind, token, claimed_at, sent)], events, claiming token)
CLAIMS: dict[str, tuple[NoticeKind, list[tuple[NoticeKind, str, datetime, bool]], list[LifecycleEvent], str]] = {
    "first alert claim": ("alert", [], [CONNECTED, LOST], "m1"),
    "alert after reconnect": ("alert", [], [CONNECTED, LOST, RECONNECTED], "m1"),
    "alert after a clean disconnect": ("alert", [], [CONNECTED, CLEAN], "m1"),
    "alert held fresh by another": ("alert", [("alert", "m1", FRESH, False)], [CONNECTED, LOST], "m2"),
    "alert held fresh by the same": ("alert", [("alert", "m1", FRESH, False)], [CONNECTED, LOST], "m1"),
    "alert held stale by another": ("alert", [("alert", "m1", OLD, False)], [CONNECTED, LOST], "m2"),
    "alert already sent": ("alert", [("alert", "m1", OLD, True)], [CONNECTED, LOST], "m1"),
    "reconnect without alert": ("reconnect", [], [CONNECTED, LOST, RECONNECTED], "r1"),
    "reconnect after alert": ("reconnect", [("alert", "m1", OLD, True)], [CONNECTED, LOST, RECONNECTED], "r1"),
    "reconnect already sent": (
        "reconnect",
        [("alert", "m1", OLD, True), ("reconnect", "r1", OLD, True)],
        [CONNECTED, LOST, RECONNECTED],
        "r2",
    ),
}


@pytest.mark.parametrize("case", CLAIMS.values(), ids=CLAIMS.keys())
def test_claims_match_the_domain_rules(
    repository: DynamoDbPresenceRepository,
    case: tuple[NoticeKind, list[tuple[NoticeKind, str, datetime, bool]], list[LifecycleEvent], str],
) -> None:
    kind, setup, events, token = case
    # Given a device's history and the claims already made (in the table and in the domain)
    _, state = replay(events[:2])
    assert state is not None
    for event in events[:2]:
        repository.record(event, T0)
    for setup_kind, setup_token, claimed_at, sent in setup:
        assert repository.claim_notice(setup_kind, "RPI", episode(), setup_token, claimed_at, claimed_at)
        state = claimed(state, setup_kind, episode(), setup_token, claimed_at)
        if sent:
            repository.mark_notice_sent(setup_kind, "RPI", episode(), setup_token, claimed_at)
            state = marked_sent(state, setup_kind, episode(), setup_token, claimed_at)
    for event in events[2:]:
        repository.record(event, T0)
        state = apply_event(state, event).state
    # When `token` claims
    answer = repository.claim_notice(kind, "RPI", episode(), token, FRESH, STALE_BEFORE)
    # Then the table answers as the domain does
    assert answer == can_claim(kind, state, episode(), token, STALE_BEFORE)


def test_only_the_claims_holder_marks_it_sent(repository: DynamoDbPresenceRepository) -> None:
    # Given an alert claimed by m1
    repository.record(LOST, T0)
    repository.claim_notice("alert", "RPI", episode(), "m1", T0, T0)
    # When m2 tries to mark it sent, then m1 does
    repository.mark_notice_sent("alert", "RPI", episode(), "m2", FRESH)
    state_after_m2 = repository.get("RPI")
    repository.mark_notice_sent("alert", "RPI", episode(), "m1", FRESH)
    state_after_m1 = repository.get("RPI")
    # Then only m1's mark counts
    assert state_after_m2 is not None and state_after_m2.alert is not None and state_after_m2.alert.sent_at is None
    assert state_after_m1 is not None and state_after_m1.alert is not None and state_after_m1.alert.sent_at == FRESH


def alert_sent(repository: DynamoDbPresenceRepository, lost: LifecycleEvent, token: str, at: datetime) -> None:
    """What check_presence does for an alert: claim it, (send the e-mail,) mark it sent."""
    assert repository.claim_notice("alert", "RPI", order_key(lost), token, at, at)
    repository.mark_notice_sent("alert", "RPI", order_key(lost), token, at)


def test_every_alert_that_went_out_is_listed_not_only_the_latest(repository: DynamoDbPresenceRepository) -> None:
    # Given RPI lost its connection, was alerted, came back, lost it again and was alerted again
    second_lost = lifecycle(
        "presence_disconnected_lost.json",
        timestamp=1741943532000,
        versionNumber=9,
        sessionIdentifier="5b3c1e0f9a2d4c7e8f6a1b2c3d4e5f60",  # the reconnected session
    )
    for event in (CONNECTED, LOST):
        repository.record(event, T0)
    alert_sent(repository, LOST, "m1", T0 + timedelta(minutes=1))
    repository.mark_notice_sent("alert", "RPI", order_key(LOST), "m1", T0 + timedelta(minutes=9))  # a replay
    repository.record(RECONNECTED, T0)
    assert repository.claim_notice("reconnect", "RPI", order_key(LOST), "r1", T0, T0)  # "reconnected" e-mail
    repository.mark_notice_sent("reconnect", "RPI", order_key(LOST), "r1", T0 + timedelta(minutes=8))
    repository.record(second_lost, T0)
    alert_sent(repository, second_lost, "m2", T0 + timedelta(minutes=11))
    # When the dashboard lists disconnect alerts from the same table
    table = boto3.resource("dynamodb", region_name=REGION).Table("presence")
    status = DynamoDbDeviceStatusSource("presence", region=REGION, table_factory=lambda: table)
    alerts = status.recent_alerts(T0 - timedelta(days=1), 10)
    # Then both alerts are there, newest first, each with its own disconnect time and reason
    assert [(a.client_id, a.disconnected_at) for a in alerts] == [
        ("RPI", datetime_from_ms(second_lost.timestamp)),
        ("RPI", datetime_from_ms(LOST.timestamp)),
    ]
    assert [a.reason for a in alerts] == ["CONNECTION_LOST", "CONNECTION_LOST"]
    # And the first keeps the time it was first marked sent (the replay changed nothing) and
    # knows when the device came back; the second is not back yet
    assert alerts[1].alerted_at == T0 + timedelta(minutes=1)
    assert [a.reconnected_at for a in alerts] == [None, datetime_from_ms(RECONNECTED.timestamp)]
    # And the kept alerts are not devices
    assert set(status.statuses()) == {"RPI"}


def test_a_reconnect_notice_is_not_kept_as_an_alert(repository: DynamoDbPresenceRepository) -> None:
    for event in (CONNECTED, LOST):
        repository.record(event, T0)
    alert_sent(repository, LOST, "m1", T0)
    repository.record(RECONNECTED, T0)
    assert repository.claim_notice("reconnect", "RPI", order_key(LOST), "r1", T0, T0)
    repository.mark_notice_sent("reconnect", "RPI", order_key(LOST), "r1", T0)
    keys = {
        item["client_id"]["S"]
        for item in boto3.client("dynamodb", region_name=REGION).scan(TableName="presence")["Items"]
    }
    assert keys == {"RPI", alert_history_key("RPI", order_key(LOST))}
