"""Adapters: one per real outside system, each implementing a port from `gasmon.ports`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gasmon.adapters.opensearch_store import OpenSearchReadingStore
    from gasmon.adapters.sqlite_store import SqliteReadingStore
    from gasmon.ports import (
        AlarmStateStore,
        DeviceStatusSource,
        RateLimiter,
        ReadingArchive,
        ReadingQueries,
        ReadingStore,
        RetentionSweeper,
    )
    from gasmon.presence import PresencePorts
    from gasmon.settings import IngestSettings, PresenceSettings, QuerySettings, StoreSettings


def open_reading_store(
    kind: str, settings: StoreSettings | PresenceSettings
) -> OpenSearchReadingStore | SqliteReadingStore:
    """The reading store `kind` names (`opensearch`, else SQLite) where the settings put it; heavy
    clients are imported only for the one chosen."""
    if kind == "opensearch":
        from gasmon.adapters.opensearch_store import DEFAULT_RETENTION_DAYS, OpenSearchReadingStore

        return OpenSearchReadingStore(
            endpoint=settings.opensearch_endpoint,
            index=settings.opensearch_index,
            region=settings.aws_region,
            retention_days=getattr(settings, "retention_days", DEFAULT_RETENTION_DAYS),
            replicas=getattr(settings, "opensearch_replicas", 0),
        )
    from gasmon.adapters.sqlite_store import SqliteReadingStore

    return SqliteReadingStore(settings.sqlite_path)


def build_reading_store(settings: StoreSettings) -> ReadingStore:
    """The reading store the settings name (`READING_STORE`)."""
    return open_reading_store(settings.reading_store, settings)


def build_reading_archive(settings: IngestSettings) -> ReadingArchive | None:
    """The Firehose archive on `ARCHIVE_STREAM`; None when it is empty (no archive)."""
    if not settings.archive_stream:
        return None
    from gasmon.adapters.firehose_archive import FirehoseReadingArchive
    from gasmon.adapters.signed_http import FIREHOSE, AwsJsonClient

    # PutRecordBatch on every POST: signed HTTP, no botocore client (gasmon.adapters.signed_http).
    client = AwsJsonClient(FIREHOSE, settings.aws_region)
    return FirehoseReadingArchive(settings.archive_stream, region=settings.aws_region, client=client)


def build_retention_sweeper(settings: StoreSettings) -> RetentionSweeper:
    """The store's side of the retention sweep (SQLite: DELETE in batches; OpenSearch: delete_by_query)."""
    return open_reading_store(settings.reading_store, settings)


def build_alarm_store(table: str, region: str, threshold_cache_seconds: float = 60.0) -> AlarmStateStore | None:
    """The DynamoDB alarm store on `table` (the function's ALARM_TABLE); None when it is empty.

    Ingest and the query API both build theirs here: None means plain threshold warnings to
    ingest and "no alarm history" to the query API. Only ingest reads thresholds, so only its
    `threshold_cache_seconds` matters.
    """
    if not table:
        return None
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
    from gasmon.adapters.signed_http import DYNAMODB, AwsJsonClient

    # Ingest's BatchGetItem on every POST goes out as signed HTTP; writes build a botocore client.
    reader = AwsJsonClient(DYNAMODB, region)
    return DynamoDbAlarmStore(table, region=region, threshold_cache_seconds=threshold_cache_seconds, reader=reader)


def build_rate_limiter(table: str, per_minute: int, region: str) -> RateLimiter | None:
    """The per-device rate limiter on the registry table `table` (DEVICE_TABLE); None when empty.

    Its UpdateItem runs on every POST, so it goes out as signed HTTP, not through botocore."""
    if not table:
        return None
    from gasmon.adapters.dynamodb_registry import DynamoDbRateLimiter
    from gasmon.adapters.signed_http import DYNAMODB, AwsJsonClient

    return DynamoDbRateLimiter(table, per_minute, region, client=AwsJsonClient(DYNAMODB, region))


def build_reading_queries(settings: StoreSettings) -> ReadingQueries:
    """The read side of the reading store the settings name (same store, same configuration)."""
    return open_reading_store(settings.reading_store, settings)


def build_device_status_source(settings: QuerySettings) -> DeviceStatusSource:
    """Presence's DynamoDB table when `PRESENCE_TABLE` is set, else a source that knows no device."""
    from gasmon.adapters.presence_status import DynamoDbDeviceStatusSource, NullDeviceStatusSource

    if settings.presence_table:
        return DynamoDbDeviceStatusSource(settings.presence_table, region=settings.aws_region)
    return NullDeviceStatusSource()


def build_presence_ports(settings: PresenceSettings) -> PresencePorts:
    """The presence table, check queue, alert topic and device directory the settings name.

    boto3 clients inside are created on first use, so building the ports costs no network call.
    """
    from gasmon.adapters.device_directory import build_device_directory
    from gasmon.adapters.dynamodb_presence import DynamoDbPresenceRepository
    from gasmon.adapters.sns_notifier import SnsNotifier
    from gasmon.adapters.sqs_scheduler import SqsCheckScheduler
    from gasmon.presence import PresencePorts

    return PresencePorts(
        repository=DynamoDbPresenceRepository(settings.required("presence_table"), region=settings.aws_region),
        scheduler=SqsCheckScheduler(settings.required("check_queue_url"), region=settings.aws_region),
        notifier=SnsNotifier(settings.required("alert_topic_arn"), region=settings.aws_region),
        directory=build_device_directory(settings),
    )
