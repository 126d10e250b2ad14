"""In-memory fakes of gasmon's ports, for unit tests and in-process benchmarks only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gasmon.errors import (
    AlarmConflictError,
    AlarmStoreUnavailableError,
    InvalidAlarmQueryError,
    PublishError,
    StoreUnavailableError,
)
from gasmon.models import AlarmEpisode, AlarmPage, AlarmState, Reading, StoreOutcome
from gasmon.ports import AlarmKey, AlarmSnapshot, ThresholdScope


class MemoryReadingStore:
    """A `ReadingStore` in a dict; `fail_with` makes the next calls raise."""

    def __init__(self) -> None:
        self.readings: dict[str, Reading] = {}
        self.requests = 0
        self.fail_with: StoreUnavailableError | None = None

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        self.requests += 1
        if self.fail_with is not None:
            raise self.fail_with
        existing = {r.reading_id for r in readings if r.reading_id in self.readings}
        conflicts = {
            r.reading_id for r in readings if r.reading_id in existing and self.readings[r.reading_id].value != r.value
        }
        created = set()
        for reading in readings:
            if reading.reading_id not in self.readings:
                self.readings[reading.reading_id] = reading
                created.add(reading.reading_id)
        return StoreOutcome(created=frozenset(created), existing=frozenset(existing), conflicts=frozenset(conflicts))


class MemoryArchive:
    """A `ReadingArchive` that keeps every call's readings; `fail_with` makes the next calls raise."""

    def __init__(self) -> None:
        self.calls: list[list[Reading]] = []
        self.fail_with: StoreUnavailableError | None = None

    def archive(self, readings: Sequence[Reading]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(list(readings))

    @property
    def reading_ids(self) -> list[str]:
        return [r.reading_id for call in self.calls for r in call]


class MemoryPublisher:
    """A `MessagePublisher` that keeps what it was asked to publish."""

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[tuple[str, dict[str, Any], int]] = []
        self.fail = fail

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        if self.fail:
            raise PublishError(f"broker unavailable for {topic}")
        self.messages.append((topic, payload, qos))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [payload for t, payload, _ in self.messages if t == topic]


class MemoryAlarmStore:
    """An `AlarmStateStore` in dicts, with the DynamoDB adapter's version check and paging.

    `list_alarms` pages the way the adapter does: at most `limit` episodes, and a cursor whenever
    the page is full (which may lead to an empty last page). Its cursors are `mem:<position>`;
    anything else is an `InvalidAlarmQueryError`. `unavailable` makes every call fail;
    `list_calls` records the `limit` of each `list_alarms` call.
    """

    def __init__(self) -> None:
        self.states: dict[AlarmKey, AlarmState] = {}
        self.episodes: dict[str, AlarmEpisode] = {}
        self.unavailable = False
        self.list_calls: list[int] = []

    def _check(self) -> None:
        if self.unavailable:
            raise AlarmStoreUnavailableError("fake outage: DynamoDB answered 500")

    def add(self, *episodes: AlarmEpisode) -> None:
        self.episodes.update((e.alarm_id, e) for e in episodes)

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        self._check()
        return AlarmSnapshot(states={k: self.states.get(k) or AlarmState(device=k[0], gas=k[1]) for k in keys})

    def save(self, state: AlarmState, episodes: Sequence[AlarmEpisode] = ()) -> AlarmState:
        self._check()
        stored = self.states.get((state.device, state.gas))
        if (stored.version if stored else 0) != state.version:
            raise AlarmConflictError("version moved")
        saved = state.model_copy(update={"version": state.version + 1})
        self.states[(state.device, state.gas)] = saved
        self.add(*episodes)
        return saved

    def _newest_first(self) -> list[AlarmEpisode]:
        return sorted(self.episodes.values(), key=lambda e: (e.started_at, e.alarm_id), reverse=True)

    def list_alarms(
        self,
        since: datetime,
        until: datetime | None = None,
        device: str | None = None,
        gas: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlarmPage:
        self._check()
        self.list_calls.append(limit)
        if limit < 1:
            raise InvalidAlarmQueryError("limit must be at least 1")
        start = 0
        if cursor is not None:
            if not cursor.startswith("mem:") or not cursor[4:].isdigit():
                raise InvalidAlarmQueryError("cursor is not one this API gave out; start again without it")
            start = int(cursor[4:])
        end = until or datetime.now(UTC)
        matching = [
            e
            for e in self._newest_first()
            if since <= e.started_at < end and device in (None, e.device) and gas in (None, e.gas)
        ]
        items = matching[start : start + limit]
        full = len(items) == limit
        return AlarmPage(items=items, next_cursor=f"mem:{start + limit}" if full else None)

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        self._check()
        return [e for e in self._newest_first() if e.is_open and device in (None, e.device) and gas in (None, e.gas)]

    def due_states(self, limit: int = 1000) -> list[AlarmState]:
        self._check()
        return [s for s in self.states.values() if s.alarm is not None or s.owed][:limit]


class MemoryDeviceRegistry:
    """A `DeviceRegistry` in dicts; counts reads so tests can pin the cost of authorization."""

    def __init__(self) -> None:
        from gasmon.identity import Credential, DeviceRecord

        self.credentials: dict[str, Credential] = {}
        self.devices: dict[str, DeviceRecord] = {}
        self.reads = 0
        self.touched: list[str] = []

    def credential(self, key_hash: str) -> Any:
        self.reads += 1
        return self.credentials.get(key_hash)

    def device(self, thing: str) -> Any:
        self.reads += 1
        return self.devices.get(thing)

    def touch(self, thing: str, now: datetime) -> None:
        self.touched.append(thing)


class CountingRateLimiter:
    """A `RateLimiter` allowing `limit` requests per name (no windows: tests are short)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def allow(self, name: str, now: datetime) -> bool:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name] <= self.limit
