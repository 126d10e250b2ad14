"""The DynamoDB alarm store against moto: conditional writes, one batched read,
threshold items and their cache, alarm history paging, and the table template.yaml creates."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from moto import mock_aws

from gasmon.adapters.dynamodb_alarms import MAX_QUERIES_PER_PAGE, DynamoDbAlarmStore, table_definition
from gasmon.errors import AlarmConflictError, AlarmStoreUnavailableError, InvalidAlarmQueryError
from gasmon.models import AlarmEpisode, AlarmState, GasThresholds, OpenAlarm

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
TABLE = "gasmon-alarms"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(fake_aws: None, clock: Clock) -> Iterator[DynamoDbAlarmStore]:
    with mock_aws():
        alarm_store = DynamoDbAlarmStore(TABLE, region="ap-northeast-2", clock=clock, threshold_cache_seconds=60)
        alarm_store.create_table()
        yield alarm_store


def open_state(device: str = "pi-1", gas: str = "no2", started: datetime = T0) -> tuple[AlarmState, AlarmEpisode]:
    alarm = OpenAlarm(
        alarm_id=f"{device}-{gas}-{started:%m%d%H%M}",
        groupid="2",
        sensorid="0006",
        level="warning",
        threshold=88,
        started_at=started,
        peak=90,
        peak_at=started,
        last_notified_at=started,
    )
    state = AlarmState(device=device, gas=gas, watermark=started, alarm=alarm)
    return state, alarm.episode(device, gas)


def test_a_state_is_written_only_over_the_version_it_was_read_at(store: DynamoDbAlarmStore) -> None:
    # Given two requests that both read pi-1/no2 at version 0
    state, episode = open_state()
    # When the first saves its open
    saved = store.save(state, [episode])
    # Then the second's save over version 0 is refused, and the stored state is the first's
    with pytest.raises(AlarmConflictError):
        store.save(state.model_copy(update={"watermark": T0 + timedelta(seconds=1)}), [episode])
    loaded = store.load([("pi-1", "no2")]).states[("pi-1", "no2")]
    assert loaded == saved and loaded.version == 1
    # And a save over the current version succeeds
    assert store.save(loaded.model_copy(update={"alarm": None})).version == 2


def test_a_refused_transaction_writes_no_episode(store: DynamoDbAlarmStore) -> None:
    # Given pi-1/no2 is at version 1
    state, episode = open_state()
    store.save(state, [episode])
    # When a stale writer tries to save a state with a different episode
    _, other = open_state(started=T0 + timedelta(minutes=1))
    with pytest.raises(AlarmConflictError):
        store.save(state, [other])
    # Then its episode was not written either
    assert [e.alarm_id for e in store.open_alarms()] == [episode.alarm_id]


def test_the_sweep_finds_only_states_with_an_open_alarm_or_an_outbox_through_the_sparse_index(
    store: DynamoDbAlarmStore,
) -> None:
    from gasmon.models import OwedMessage

    # Given an open alarm, a closed state with an owed clear, and a quiet closed state
    opened, episode = open_state("pi-1")
    store.save(opened, [episode])
    owing = AlarmState(device="pi-2", gas="no2", owed=(OwedMessage(topic="pi/1", payload={"clear": "no2 clear"}),))
    store.save(owing)
    quiet = store.save(AlarmState(device="pi-3", gas="no2", watermark=T0))
    # When the sweep asks for due states
    due = store.due_states()
    # Then it gets the first two, with their versions, from one Query of the index (no Scan)
    assert {(s.device, s.version) for s in due} == {("pi-1", 1), ("pi-2", 1)}
    assert store.reads == 1
    # And once the outbox is emptied and the alarm closed, neither is due any more
    (pi1,) = [s for s in due if s.device == "pi-1"]
    (pi2,) = [s for s in due if s.device == "pi-2"]
    store.save(pi1.model_copy(update={"alarm": None}))
    store.save(pi2.model_copy(update={"owed": ()}))
    assert store.due_states() == [] and quiet.version == 1


def test_states_and_thresholds_come_in_one_batched_read(store: DynamoDbAlarmStore) -> None:
    # Given one saved state and a group threshold item
    state, episode = open_state()
    store.save(state, [episode])
    store.put_thresholds(("group", "2"), {"no2": GasThresholds(warning=60)})
    reads = store.reads
    # When four gases of one device and its group and device scopes are loaded
    keys = [("pi-1", gas) for gas in ("no2", "co", "c2h5oh", "h2")]
    snapshot = store.load(keys, [("group", "2"), ("device", "pi-1")])
    # Then one BatchGetItem answered everything
    assert store.reads - reads == 1
    assert snapshot.states[("pi-1", "no2")].alarm == state.alarm
    assert snapshot.states[("pi-1", "co")] == AlarmState(device="pi-1", gas="co")
    assert snapshot.overrides == {("group", "2"): {"no2": GasThresholds(warning=60)}}


def documented_put_item() -> dict[str, Any]:
    """The `aws dynamodb put-item --item '...'` JSON from docs/alarms.md, as an operator runs it."""
    text = (ROOT / "docs" / "alarms.md").read_text()
    match = re.search(r"--item '(\{.*?\})'", text, re.S)
    assert match, "docs/alarms.md shows no put-item command"
    item: dict[str, Any] = json.loads(match.group(1))
    return item


def test_the_documented_put_item_sets_device_thresholds_after_the_cache_expires(
    store: DynamoDbAlarmStore, clock: Clock
) -> None:
    # Given the function has read pi-7's (missing) threshold item once
    store.load([], [("device", "pi-7")])
    # When an operator runs the documented put-item
    store.client.put_item(TableName=TABLE, Item=documented_put_item())
    # Then the cached answer holds until the TTL passes, without another read for it
    reads = store.reads
    assert store.load([], [("device", "pi-7")]).overrides == {}
    assert store.reads == reads
    clock.now += 61
    overrides = store.load([], [("device", "pi-7")]).overrides[("device", "pi-7")]
    assert overrides["no2"] == GasThresholds(warning=60, critical=200, band=5)


def test_a_bad_threshold_entry_is_ignored_and_named(store: DynamoDbAlarmStore) -> None:
    # Given a group item with one good and one bad gas entry
    store.client.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": "GROUP#2"},
            "sk": {"S": "THRESHOLDS"},
            "co": {"M": {"warning": {"N": "50"}}},
            "no2": {"M": {"warning": {"N": "-5"}}},
            "note": {"S": "set by ops, ticket 42"},
        },
    )
    # When it is loaded
    snapshot = store.load([], [("group", "2")])
    # Then the good one applies and the bad one is reported
    assert snapshot.overrides[("group", "2")] == {"co": GasThresholds(warning=50)}
    assert len(snapshot.problems) == 1 and "no2" in snapshot.problems[0]


def test_alarm_history_pages_newest_first_across_months_and_devices(store: DynamoDbAlarmStore) -> None:
    # Given 7 episodes over three months on two devices, the last one still open
    starts = [T0 - timedelta(days=d) for d in (70, 40, 35, 20, 10, 3, 1)]
    for index, started in enumerate(starts):
        device = "pi-1" if index % 2 else "pi-2"
        state, episode = open_state(device, "no2" if index != 3 else "co", started)
        if index < len(starts) - 1:
            episode = episode.model_copy(update={"ended_at": started + timedelta(minutes=5)})
        store.save(state.model_copy(update={"gas": f"{episode.gas}{index}"}), [episode])
    since, until = T0 - timedelta(days=60), T0
    # When the history since 60 days ago is read two at a time
    seen: list[datetime] = []
    cursor = None
    for _ in range(10):
        page = store.list_alarms(since, until, limit=2, cursor=cursor)
        seen.extend(e.started_at for e in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every episode in range comes once, newest first
    assert seen == sorted(starts[1:], reverse=True)
    # And a device's history and a gas filter work
    assert [e.started_at for e in store.list_alarms(since, until, device="pi-1").items] == [
        starts[5],
        starts[3],
        starts[1],
    ]
    assert [e.gas for e in store.list_alarms(since, until, gas="co").items] == ["co"]
    # And only the last one is open
    assert [e.started_at for e in store.open_alarms()] == [starts[-1]]


def test_a_sparse_history_is_read_with_a_bounded_number_of_queries_per_page(store: DynamoDbAlarmStore) -> None:
    # Given one CO episode ten months back, and NO2 episodes every day of the last month
    old, _ = open_state("pi-1", "co", T0 - timedelta(days=300))
    store.save(old, [old.alarm.episode("pi-1", "co").model_copy(update={"ended_at": T0})])  # type: ignore[union-attr]
    for day in range(1, 31):
        state, episode = open_state("pi-2", f"no2{day}", T0 - timedelta(days=day))
        store.save(state, [episode.model_copy(update={"gas": "no2", "ended_at": episode.started_at})])
    # When the CO history of the last year is read (every month but one has nothing for it)
    pages, found, cursor = 0, [], None
    while True:
        before = store.reads
        page = store.list_alarms(T0 - timedelta(days=365), T0, gas="co", limit=1, cursor=cursor)
        pages += 1
        # Then no page costs more than the bound, whatever the range
        assert store.reads - before <= MAX_QUERIES_PER_PAGE
        found += page.items
        cursor = page.next_cursor
        if cursor is None or pages > 20:
            break
    # And following the cursors still reaches the one old episode, once
    assert [e.gas for e in found] == ["co"] and cursor is None and pages > 1


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        base64.urlsafe_b64encode(b'{"m": "2026-05", "k": {"secret": {"S": "x"}}}').decode(),
        base64.urlsafe_b64encode(b'{"m": "2026-05", "k": {"pk": {"N": "1"}}}').decode(),
    ],
)
def test_a_cursor_from_elsewhere_is_refused(store: DynamoDbAlarmStore, cursor: str) -> None:
    with pytest.raises(InvalidAlarmQueryError):
        store.list_alarms(T0, cursor=cursor)


def test_a_missing_table_is_unavailable_not_a_crash(store: DynamoDbAlarmStore) -> None:
    other = DynamoDbAlarmStore("no-such-table", region="ap-northeast-2")
    with pytest.raises(AlarmStoreUnavailableError):
        other.load([("pi-1", "no2")])


def test_the_table_matches_template_yaml() -> None:
    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    properties = template["Resources"]["AlarmTable"]["Properties"]
    expected = table_definition("x")

    def normal(items: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in items)

    assert properties["BillingMode"] == expected["BillingMode"]
    assert normal(properties["AttributeDefinitions"]) == normal(expected["AttributeDefinitions"])
    assert properties["KeySchema"] == expected["KeySchema"]
    assert normal(properties["GlobalSecondaryIndexes"]) == normal(expected["GlobalSecondaryIndexes"])
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


class RefusingClient:
    """A DynamoDB client that answers every Query as DynamoDB does a start key outside its bounds."""

    def query(self, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Code": "ValidationException", "Message": "The provided starting key is outside query boundaries"}
        raise ClientError({"Error": error}, "Query")


def test_a_start_key_dynamodb_refuses_is_a_bad_cursor_not_a_retry_later() -> None:
    # Given a cursor this adapter gave out, which DynamoDB finds outside the query's bounds
    store = DynamoDbAlarmStore(TABLE, region="ap-northeast-2", client=RefusingClient())
    key = {"by_time_pk": {"S": "ALARMS#2026-05"}, "by_time_sk": {"S": "2026-04-30T00:00:00.000000Z#a"}}
    cursor = base64.urlsafe_b64encode(json.dumps({"m": "2026-05", "k": key}).encode()).decode()
    # Then the page is refused as a bad cursor (a 422), never as an outage (a 503 that can never pass)
    with pytest.raises(InvalidAlarmQueryError):
        store.list_alarms(T0 - timedelta(days=1), T0, cursor=cursor)
    # ... while the same refusal without a cursor is still an outage
    with pytest.raises(AlarmStoreUnavailableError):
        store.list_alarms(T0 - timedelta(days=1), T0)
