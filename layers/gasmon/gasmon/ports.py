"""Ports: the small interfaces every outside system sits behind.

Each has one adapter per real system (see `gasmon.adapters`) and an in-memory fake in the unit
tests. Domain code depends on these Protocols only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from gasmon.models import (
    BucketStats,
    DeviceLatest,
    DeviceStatus,
    DisconnectAlert,
    Reading,
    SeriesQuery,
    StoreOutcome,
)


class ReadingStore(Protocol):
    """Where readings are kept: OpenSearch in AWS, SQLite as the embedded default."""

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        """Store readings idempotently by `reading_id`; say which were new.

        Raises `StoreUnavailableError` when the store cannot take them now; then nothing may be
        reported as stored.
        """
        ...


class MessagePublisher(Protocol):
    """Publishes JSON messages on MQTT topics (AWS IoT Core's iot-data API)."""

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        """Publish one message; raises `PublishError` when the broker does not take it."""
        ...


class ReadingQueries(Protocol):
    """Read side of the reading store, for the query API and the dashboard.

    Implemented by the SQLite store (SQL bucketing by `created_ms`) and the OpenSearch store
    (date_histogram, composite/top_hits aggregations). Paging is keyset: each method takes the
    position after which to continue and returns at most `limit` items; callers ask for one more
    than they show to learn whether another page exists. Failures raise `StoreUnavailableError`.
    """

    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        """Count, average, minimum and maximum of `query.gas` per epoch-aligned bucket of
        `query.interval_seconds` in [start, end), non-empty buckets only, oldest first."""
        ...

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        """Devices (see `gasmon.models.device_key`) sorted by key, keys greater than `after`,
        each with its latest value per gas and the group and location of its latest reading."""
        ...

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        """Readings whose value is at or above their gas's entry in `thresholds` (other gases never
        match), taken at or after `since`, newest first (ties by `reading_id`, descending), strictly
        before the `(created_at, reading_id)` position `before` when given."""
        ...


class DeviceStatusSource(Protocol):
    """Where device connection state comes from: presence's DynamoDB table, or nothing."""

    @property
    def configured(self) -> bool:
        """False for the null source: the dashboard then shows every device as `unknown`."""
        ...

    def statuses(self) -> Mapping[str, DeviceStatus]:
        """The last recorded state of every device presence knows, keyed by MQTT client id."""
        ...

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        """Disconnects presence alerted on at or after `since`, newest first (ties by client id,
        descending), strictly before the `(disconnected_at, client_id)` position `before`."""
        ...
