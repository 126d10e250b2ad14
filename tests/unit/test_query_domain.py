"""The query use cases (gasmon.query) with in-memory fakes for the store and presence."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from gasmon.errors import InvalidQueryError
from gasmon.identity import DeviceRecord
from gasmon.models import BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery, device_key
from gasmon.query import (
    QueryPolicy,
    alert_page,
    auto_interval,
    decode_cursor,
    device_page,
    encode_cursor,
    format_interval,
    parse_interval,
    plan_series,
    series,
    warning_page,
)
from gasmon.query_models import DeviceStatus, DisconnectAlert

NOW = datetime(2025, 3, 14, 9, 7, 30, tzinfo=UTC)
POLICY = QueryPolicy(thresholds={"no2": 88.0, "co": 35.0})


def reading(at: datetime, gas: str = "no2", value: float = 50.0, sensorid: str = "0006", **extra: str) -> Reading:
    groupid = extra.get("groupid", "2")
    deviceid = extra.get("deviceid")
    return Reading(
        reading_id=f"{groupid}-{sensorid}-{gas}-{at.timestamp()}",
        groupid=groupid,
        gas=gas,
        sensorid=sensorid,
        sensortype="9",
        value=value,
        createdtime=at.isoformat(),
        created_at=at,
        received_at=at,
        deviceid=deviceid,
    )


@dataclass
class MemoryQueries:
    """A `ReadingQueries` over a list: the plain-Python statement of what the adapters do."""

    readings: list[Reading] = field(default_factory=list)

    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        step = query.interval_seconds * 1000
        buckets: dict[int, list[float]] = {}
        for r in self.readings:
            ms = int(r.created_at.timestamp() * 1000)
            if r.gas == query.gas and query.start <= r.created_at < query.end:
                if all(getattr(query, f) in (None, getattr(r, f)) for f in ("groupid", "sensorid", "deviceid")):
                    buckets.setdefault(ms // step * step, []).append(r.value)
        return [
            BucketStats(
                start=datetime.fromtimestamp(key / 1000, tz=UTC),
                count=len(values),
                avg=sum(values) / len(values),
                min=min(values),
                max=max(values),
            )
            for key, values in sorted(buckets.items())
        ]

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        by_device: dict[str, list[Reading]] = {}
        for r in self.readings:
            if groupid is None or r.groupid == groupid:
                by_device.setdefault(r.device, []).append(r)
        keys = sorted(k for k in by_device if after is None or k > after)[:limit]
        result = []
        for key in keys:
            rows = by_device[key]
            newest = max(rows, key=lambda r: r.created_at)
            latest: dict[str, Reading] = {}
            for r in rows:
                if r.gas not in latest or r.created_at > latest[r.gas].created_at:
                    latest[r.gas] = r
            result.append(
                DeviceLatest(
                    device=key,
                    deviceid=newest.deviceid,
                    groupid=newest.groupid,
                    last_seen=newest.created_at,
                    values={
                        gas: GasValue(value=r.value, at=r.created_at, sensorid=r.sensorid, createdtime=r.createdtime)
                        for gas, r in latest.items()
                    },
                )
            )
        return result

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        found = [
            r
            for r in self.readings
            if r.gas in thresholds
            and r.value >= thresholds[r.gas]
            and r.created_at >= since
            and (before is None or (r.created_at, r.reading_id) < before)
            and (groupid is None or r.groupid == groupid)
        ]
        found.sort(key=lambda r: (r.created_at, r.reading_id), reverse=True)
        return found[:limit]


@dataclass
class MemoryPresence:
    states: dict[str, DeviceStatus] = field(default_factory=dict)
    alerts: list[DisconnectAlert] = field(default_factory=list)
    configured: bool = True

    def statuses(self) -> Mapping[str, DeviceStatus]:
        return self.states

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        found = [
            a
            for a in self.alerts
            if a.disconnected_at >= since and (before is None or (a.disconnected_at, a.client_id) < before)
        ]
        return sorted(found, key=lambda a: (a.disconnected_at, a.client_id), reverse=True)[:limit]


# ---- intervals and series ----


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800)])
def test_an_interval_is_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds
    assert format_interval(seconds) == text


@pytest.mark.parametrize("text", ["0m", "5", "m", "5w", "-5m", "5.5m", "auto"])
def test_an_interval_without_a_known_unit_names_the_parameter(text: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        parse_interval(text)
    assert caught.value.details[0].path == "interval"


def test_auto_interval_keeps_a_week_under_three_hundred_points() -> None:
    assert auto_interval(timedelta(hours=1)) == 30
    assert auto_interval(timedelta(days=7)) == 3600


def test_a_series_defaults_to_the_last_24_hours_with_aligned_buckets() -> None:
    # Given no start or end
    # When the series is planned with 5-minute buckets
    query = plan_series("no2", None, None, "5m", NOW, POLICY)
    # Then it ends now and starts on a 5-minute boundary 24 h earlier
    assert query.end == NOW
    assert query.start == datetime(2025, 3, 13, 9, 5, tzinfo=UTC)
    assert query.interval_seconds == 300


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidQueryError) as caught:
        plan_series("no2", NOW, NOW - timedelta(hours=1), "5m", NOW, POLICY)
    assert caught.value.details[0].path == "start"


def test_too_many_buckets_are_refused_with_a_way_out() -> None:
    with pytest.raises(InvalidQueryError) as caught:
        plan_series("no2", NOW - timedelta(days=30), NOW, "1m", NOW, POLICY)
    assert "wider interval" in caught.value.details[0].problem


def test_times_without_a_zone_are_utc() -> None:
    query = plan_series("no2", datetime(2025, 3, 14, 8, 0), datetime(2025, 3, 14, 9, 0), "1m", NOW, POLICY)
    assert query.start == datetime(2025, 3, 14, 8, 0, tzinfo=UTC)


def test_a_series_has_every_bucket_and_empty_ones_have_no_values() -> None:
    # Given two readings in the first 5 minutes and one in the third
    start = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    store = MemoryQueries(
        [
            reading(start + timedelta(seconds=10), value=40),
            reading(start + timedelta(seconds=70), value=60, sensorid="0010"),
            reading(start + timedelta(minutes=11), value=90.123456),
        ]
    )
    query = plan_series("no2", start, start + timedelta(minutes=15), "5m", NOW, POLICY)
    # When the series is read
    answer = series(store, query, POLICY)
    # Then there are three buckets: stats, a gap, stats (rounded), and the NO2 threshold
    assert [p.count for p in answer.points] == [2, 0, 1]
    assert (answer.points[0].avg, answer.points[0].min, answer.points[0].max) == (50, 40, 60)
    assert answer.points[1].avg is None
    assert answer.points[2].avg == 90.1235
    assert answer.threshold == 88.0
    assert answer.interval == "5m"


def test_a_gas_without_a_threshold_has_a_null_threshold() -> None:
    query = plan_series("h2", None, None, "1h", NOW, POLICY)
    assert series(MemoryQueries(), query, POLICY).threshold is None


# ---- cursors ----


def test_a_cursor_round_trips_and_belongs_to_its_list() -> None:
    cursor = encode_cursor("w", {"t": 1, "id": "x"})
    assert decode_cursor("w", cursor) == {"k": "w", "t": 1, "id": "x"}
    with pytest.raises(InvalidQueryError):
        decode_cursor("d", cursor)


@pytest.mark.parametrize("cursor", ["not-base64!", "e30", "bnVsbA", "eyJrIjoidyIsInQiOjEsImlkIjoieCJ9"])
def test_a_made_up_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        decode_cursor("w", cursor)
    assert caught.value.details[0].path == "cursor"


def test_cursors_are_signed_with_the_deployments_key() -> None:
    # Given a deployment with its own cursor key (CURSOR_KEY)
    from gasmon.policies import query_policy
    from gasmon.settings import QuerySettings

    policy = query_policy(QuerySettings(cursor_key="deployment secret"))
    store = MemoryQueries([reading(NOW - timedelta(minutes=m), value=90 + m) for m in range(3)])
    page = warning_page(store, policy, NOW, limit=1)
    # Then its cursors continue its lists, and a cursor signed with the key in the source does not
    assert warning_page(store, policy, NOW, limit=1, cursor=page.next_cursor).warnings
    forged = encode_cursor("w", {"t": 1, "id": "x"})
    with pytest.raises(InvalidQueryError):
        warning_page(store, policy, NOW, limit=1, cursor=forged)


# ---- devices ----


def test_device_key_is_the_device_id_or_the_group() -> None:
    assert device_key("2", "pi-1") == "pi-1"
    assert device_key("2", None) == "2"


def test_devices_join_presence_by_device_id() -> None:
    # Given pi-1 online and pi-2 offline in presence, and a seed document (group 7) without a device id
    store = MemoryQueries(
        [
            reading(NOW - timedelta(minutes=1), deviceid="pi-1", value=95),
            reading(NOW - timedelta(minutes=9), deviceid="pi-2"),
            reading(NOW - timedelta(minutes=2), groupid="7"),
        ]
    )
    presence = MemoryPresence(
        {
            "pi-1": DeviceStatus(client_id="pi-1", state="online", since=NOW - timedelta(hours=1)),
            "pi-2": DeviceStatus(client_id="pi-2", state="offline", since=NOW, reason="CONNECTION_LOST"),
        }
    )
    # When the device table is read
    page = device_page(store, presence, POLICY, limit=10)
    # Then each device has presence's state, or unknown when presence cannot know it
    rows = {d.device: d for d in page.devices}
    assert [d.device for d in page.devices] == ["7", "pi-1", "pi-2"]
    assert rows["pi-1"].status == "online" and rows["pi-1"].over_threshold == ["no2"]
    assert rows["pi-2"].status == "offline" and rows["pi-2"].disconnect_reason == "CONNECTION_LOST"
    assert rows["7"].status == "unknown"
    assert page.presence is True and page.next_cursor is None


def test_a_device_presence_knows_but_that_never_posted_is_listed() -> None:
    presence = MemoryPresence({"pi-9": DeviceStatus(client_id="pi-9", state="offline")})
    page = device_page(MemoryQueries(), presence, POLICY, limit=10)
    assert [(d.device, d.status, d.last_seen) for d in page.devices] == [("pi-9", "offline", None)]


def test_devices_page_through_readings_and_presence_in_key_order() -> None:
    # Given five devices with readings and two more only presence knows
    store = MemoryQueries([reading(NOW, deviceid=f"pi-{n}") for n in (1, 3, 5, 7, 9)])
    presence = MemoryPresence({f"pi-{n}": DeviceStatus(client_id=f"pi-{n}", state="online") for n in (2, 8)})
    # When the table is read two devices at a time
    seen, cursor, pages = [], None, 0
    while True:
        page = device_page(store, presence, POLICY, limit=2, cursor=cursor)
        seen += [d.device for d in page.devices]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every device appears once, in order
    assert seen == ["pi-1", "pi-2", "pi-3", "pi-5", "pi-7", "pi-8", "pi-9"]
    assert pages == 4


def test_without_presence_every_device_is_unknown() -> None:
    store = MemoryQueries([reading(NOW, deviceid="pi-1")])
    page = device_page(store, MemoryPresence(configured=False), POLICY, limit=10)
    assert page.presence is False
    assert page.devices[0].status == "unknown"


class MemoryRegistry:
    """The registry as the query API reads it; counts its reads."""

    def __init__(self, records: list[DeviceRecord]) -> None:
        self.records = {r.thing: r for r in records}
        self.reads: list[list[str]] = []

    def devices_named(self, things: list[str]) -> dict[str, DeviceRecord]:
        self.reads.append(list(things))
        return {t: self.records[t] for t in things if t in self.records}


def registered(thing: str, group: str, location: str | None = None) -> DeviceRecord:
    return DeviceRecord(thing=thing, groupid=group, location=location, created_at=NOW)


def test_a_registered_device_is_shown_with_the_registrys_group_and_location() -> None:
    # Given the seed's RPI registered in group 2 at the seed's place, whose readings carry no gps,
    # and a device the registry does not know
    store = MemoryQueries([reading(NOW, deviceid="RPI", groupid="2"), reading(NOW, deviceid="pi-x")])
    registry = MemoryRegistry([registered("RPI", "2", "37.61, 126.99")])
    # When the device table is read
    page = device_page(store, MemoryPresence(configured=False), POLICY, limit=10, registry=registry)
    # Then RPI has its group and location from the registry, the other keeps what readings say,
    # and the page cost one registry read
    rows = {d.device: d for d in page.devices}
    assert (rows["RPI"].groupid, rows["RPI"].gps, rows["RPI"].lat, rows["RPI"].lon) == (
        "2",
        "37.61, 126.99",
        37.61,
        126.99,
    )
    assert rows["pi-x"].gps == reading(NOW).gps
    assert registry.reads == [["RPI", "pi-x"]]


def test_the_registry_is_read_once_per_hundred_devices_shown() -> None:
    store = MemoryQueries([reading(NOW, deviceid=f"pi-{n:03d}") for n in range(250)])
    registry = MemoryRegistry([])
    device_page(store, MemoryPresence(configured=False), POLICY, limit=250, registry=registry)
    assert [len(batch) for batch in registry.reads] == [100, 100, 50]


# ---- warnings ----


def test_warnings_are_readings_at_or_above_their_threshold_newest_first() -> None:
    # Given NO2 at 87.9, 88 and 120 and CO at 40, and H2 (no threshold here) at 9999
    store = MemoryQueries(
        [
            reading(NOW - timedelta(minutes=4), value=87.9),
            reading(NOW - timedelta(minutes=3), value=88),
            reading(NOW - timedelta(minutes=2), value=120),
            reading(NOW - timedelta(minutes=1), gas="co", value=40, sensorid="0005"),
            reading(NOW, gas="h2", value=9999, sensorid="0008"),
        ]
    )
    # When the warnings of the last hour are read
    page = warning_page(store, POLICY, NOW, since=NOW - timedelta(hours=1), limit=10)
    # Then there are three, newest first, each with its threshold
    assert [(w.gas, w.value, w.threshold) for w in page.warnings] == [("co", 40, 35), ("no2", 120, 88), ("no2", 88, 88)]
    assert page.next_cursor is None


def test_warnings_page_with_a_cursor_without_repeats() -> None:
    # Given seven crossings, two of them at the same instant
    store = MemoryQueries([reading(NOW - timedelta(minutes=m), value=90 + m) for m in range(6)])
    store.readings.append(reading(NOW - timedelta(minutes=3), value=99, sensorid="0011"))
    seen, cursor = [], None
    while True:
        page = warning_page(store, POLICY, NOW, since=NOW - timedelta(hours=1), limit=3, cursor=cursor)
        seen += [w.reading_id for w in page.warnings]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


def test_warnings_for_one_gas_only() -> None:
    store = MemoryQueries([reading(NOW, value=90), reading(NOW, gas="co", value=90, sensorid="0005")])
    page = warning_page(store, POLICY, NOW, since=NOW - timedelta(hours=1), limit=10, gas="co")
    assert [w.gas for w in page.warnings] == ["co"]
    assert warning_page(store, POLICY, NOW, since=NOW - timedelta(hours=1), limit=10, gas="h2").warnings == []


# ---- alerts ----


def test_alerts_without_presence_say_so() -> None:
    page = alert_page(MemoryPresence(configured=False), POLICY, NOW, limit=5, since=NOW - timedelta(days=7))
    assert page.presence is False and page.alerts == []


def test_alerts_page_newest_first() -> None:
    alerts = [DisconnectAlert(client_id=f"pi-{n}", disconnected_at=NOW - timedelta(minutes=n)) for n in range(5)]
    first = alert_page(MemoryPresence(alerts=alerts), POLICY, NOW, since=NOW - timedelta(days=1), limit=3)
    second = alert_page(
        MemoryPresence(alerts=alerts), POLICY, NOW, since=NOW - timedelta(days=1), limit=3, cursor=first.next_cursor
    )
    assert [a.client_id for a in first.alerts + second.alerts] == ["pi-0", "pi-1", "pi-2", "pi-3", "pi-4"]
    assert second.next_cursor is None


def test_a_pi_without_a_device_id_joins_presence_by_its_group() -> None:
    # Given a seed Pi whose group is named like its thing (presence's convention), posting two gases
    store = MemoryQueries(
        [reading(NOW, groupid="pi-7"), reading(NOW, gas="co", value=3, sensorid="0005", groupid="pi-7")]
    )
    presence = MemoryPresence({"pi-7": DeviceStatus(client_id="pi-7", state="offline", reason="CONNECTION_LOST")})
    # When the device table is read
    page = device_page(store, presence, POLICY, limit=10)
    # Then the Pi is one row with both gases, offline, and not listed a second time from presence
    [row] = page.devices
    assert (row.device, row.status, sorted(row.values)) == ("pi-7", "offline", ["co", "no2"])
