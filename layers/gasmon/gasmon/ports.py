"""Ports: the small interfaces every outside system sits behind.

Each has one adapter per real system (see `gasmon.adapters`) and an in-memory fake in the unit
tests. Domain code depends on these Protocols only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from gasmon.models import (
    AlarmEpisode,
    AlarmOutcome,
    AlarmPage,
    AlarmState,
    BucketStats,
    DeviceLatest,
    GasmonModel,
    GasThresholds,
    Reading,
    SeriesQuery,
    StoreOutcome,
)

if TYPE_CHECKING:  # only in signatures: the ingest function never builds these models
    from gasmon.identity import Credential, DeviceRecord
    from gasmon.presence_models import (
        CheckRequest,
        DeviceInfo,
        Email,
        LifecycleEvent,
        NoticeKind,
        PresenceState,
        RecordOutcome,
    )
    from gasmon.query_models import DeviceStatus, DisconnectAlert


class ReadingStore(Protocol):
    """Where readings are kept: OpenSearch in AWS, SQLite as the embedded default."""

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        """Store readings idempotently by `reading_id`; say which were new.

        Raises `StoreUnavailableError` when the store cannot take them now; then nothing may be
        reported as stored.
        """
        ...


class ReadingArchive(Protocol):
    """Where every accepted reading is kept for good (S3 through Kinesis Data Firehose in AWS).

    Ingest archives a request's valid readings before it stores them, so a reading is never
    reported accepted without being archived. Delivery is at least once: a retried POST can
    archive a reading twice, under the same `reading_id`.
    """

    def archive(self, readings: Sequence[Reading]) -> None:
        """Hand the readings over in as few requests as the service allows (one per POST).

        Raises `ArchiveUnavailableError` when some could not be handed over; the caller must then
        not report them accepted.
        """
        ...


class SweepOutcome(GasmonModel):
    """What one retention sweep did: readings deleted, and whether nothing older is left."""

    deleted: int
    complete: bool


class RetentionSweeper(Protocol):
    """The reading store's side of retention: forget readings older than a cutoff."""

    def delete_older_than(self, cutoff: datetime, batch_size: int, max_batches: int) -> SweepOutcome:
        """Delete readings taken before `cutoff`, at most `batch_size * max_batches` of them.

        `complete` is False when the bound stopped it with more to delete (the next sweep goes on).
        Raises `StoreUnavailableError`.
        """
        ...


class MessagePublisher(Protocol):
    """Publishes JSON messages on MQTT topics (AWS IoT Core's iot-data API)."""

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        """Publish one message; raises `PublishError` when the broker does not take it."""
        ...


class AlarmProcessor(Protocol):
    """Alarms with memory as ingest sees them (`gasmon.alarms.Alarms`), so neither imports the other."""

    def process(
        self, readings: Sequence[Reading], publisher: MessagePublisher, topic_for: Callable[[str], str]
    ) -> AlarmOutcome:
        """Evaluate, persist and publish alarms for a request's readings."""
        ...


# ---- Presence ----------------------------------------------------------------------------------


class PresenceRepository(Protocol):
    """Presence state per client id (DynamoDB in AWS). Every write is conditional, so duplicate,
    late and concurrent deliveries can never move a device's state backwards or claim a notice
    twice. `gasmon.presence.apply_event` and `gasmon.presence.can_claim` state the rules; an
    adapter must behave exactly like them. Failures raise `PresenceStoreError`."""

    def record(self, event: LifecycleEvent, now: datetime) -> RecordOutcome:
        """Apply the event if it is newer than the stored one (`apply_event`); return the state."""
        ...

    def get(self, client_id: str) -> PresenceState | None:
        """The state of one client id (strongly consistent), or None if never seen."""
        ...

    def claim_notice(
        self,
        kind: NoticeKind,
        client_id: str,
        episode_id: str,
        token: str,
        now: datetime,
        stale_before: datetime,
    ) -> bool:
        """Atomically claim the right to send one `kind` of email for one episode (`can_claim`).

        True means this caller must send it and then call `mark_notice_sent`.
        """
        ...

    def mark_notice_sent(self, kind: NoticeKind, client_id: str, episode_id: str, token: str, now: datetime) -> None:
        """Record that the claimed email went out (only if `token` still holds the claim)."""
        ...


class CheckScheduler(Protocol):
    """Runs a presence check later (an SQS delay queue in AWS)."""

    def schedule(self, check: CheckRequest, delay_seconds: int) -> None:
        """Deliver `check` after `delay_seconds` (0..900); raises `SchedulingError`."""
        ...


class Notifier(Protocol):
    """Sends an email to the operators (the SNS topic `disconnected_notice` in AWS)."""

    def send(self, email: Email) -> None:
        """Hand one email over for delivery; raises `NotifyError`."""
        ...


class DeviceDirectory(Protocol):
    """What gasmon knows about a device from its readings (group, location)."""

    def describe(self, client_id: str, thing_name: str) -> DeviceInfo | None:
        """The device's group and location, or None if gasmon has no readings from it.

        A directory that cannot answer returns None: an email without a group beats no email.
        """


# ---- Alarms ----

# (device, gas): the unit an alarm is kept for.
AlarmKey = tuple[str, str]
# ("group", groupid) or ("device", device): where per-group and per-device thresholds live.
ThresholdScope = tuple[Literal["group", "device"], str]


class AlarmSnapshot(GasmonModel):
    """What one batched read returns: the state of every key asked for, and threshold overrides.

    A key never saved comes back as a fresh `AlarmState` (version 0). `overrides` holds an entry
    for every scope asked for that has an item; `problems` names override items that were ignored.
    """

    states: dict[AlarmKey, AlarmState]
    overrides: dict[ThresholdScope, dict[str, GasThresholds]] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


class AlarmStateStore(Protocol):
    """Alarm state per (device, gas), alarm history, and operator thresholds (DynamoDB in AWS)."""

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        """Read the states of `keys` and the overrides of `scopes` in as few round trips as possible.

        Overrides may come from a short-lived cache. Raises `AlarmStoreUnavailableError`.
        """
        ...

    def save(self, state: AlarmState, episodes: Sequence[AlarmEpisode] = ()) -> AlarmState:
        """Write `state` if the stored version is still `state.version`, with `episodes`, atomically.

        Returns the state as stored (version + 1). Raises `AlarmConflictError` when another writer
        got there first (re-read and re-apply), `AlarmStoreUnavailableError` when it cannot write.
        """
        ...

    def list_alarms(
        self,
        since: datetime,
        until: datetime | None = None,
        device: str | None = None,
        gas: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlarmPage:
        """Alarm episodes that started in [since, until), newest first, at most `limit` per page.

        An adapter makes a fixed maximum of requests per call: a page may end before `limit`
        (even empty) when it reaches that bound, with a cursor to continue from there.
        `next_cursor` continues just after the page's last episode (None: nothing follows).
        Raises `InvalidAlarmQueryError` for a cursor it did not give out,
        `AlarmStoreUnavailableError` when it cannot read.
        """
        ...

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        """Every alarm episode open now (whenever it started), newest first."""

    def due_states(self, limit: int = 1000) -> list[AlarmState]:
        """States that need the stale sweep: an open alarm or an outbox (`owed`), at most `limit`.

        Found through a sparse index, never a scan of every state.
        """
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


# ---- Identity ----


class DeviceRegistry(Protocol):
    """Devices and credentials (a DynamoDB table in AWS): what the authorizer and the presence
    e-mails read. Credentials are found by the hash of their key only."""

    def credential(self, key_hash: str) -> Credential | None:
        """The credential with this key hash (one read), or None. Raises `RegistryUnavailableError`."""
        ...

    def device(self, thing: str) -> DeviceRecord | None:
        """The device registered under this thing name, or None. Raises `RegistryUnavailableError`."""
        ...

    def touch(self, thing: str, now: datetime) -> None:
        """Record that the device was seen (best effort: never raises)."""
        ...


class DeviceNames(Protocol):
    """What the query API reads of the registry: the devices of one page, by thing name."""

    def devices_named(self, things: Sequence[str]) -> Mapping[str, DeviceRecord]:
        """The registered devices among `things` (at most 100: one batch read); raises
        `StoreUnavailableError` when the registry cannot answer."""
        ...


class RateLimiter(Protocol):
    """Per-device throttling: how many requests one credential may make per minute."""

    def allow(self, name: str, now: datetime) -> bool:
        """Count one request of `name`; False once its allowance for this minute is used up.

        A limiter that cannot count answers True: throttling must never lose readings."""
        ...
