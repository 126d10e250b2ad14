"""Settings turned into domain policies: the one place that knows both floors.

`gasmon.settings` reads the environment and imports no domain module; the domain modules know no
settings. Handlers call these builders once at cold start. Each imports its own domain module only,
so a function's cold start loads only the use case it runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gasmon.alarms import AlarmPolicy
    from gasmon.ingest import IngestPolicy
    from gasmon.presence import PresencePolicy
    from gasmon.query import QueryPolicy
    from gasmon.settings import AlarmSweepSettings, IngestSettings, PresenceSettings, QuerySettings


def ingest_policy(settings: IngestSettings) -> IngestPolicy:
    """The ingest use case's rules from the ingest function's settings."""
    from gasmon.ingest import IngestPolicy

    return IngestPolicy(
        thresholds=settings.thresholds,
        local_timezone=settings.local_timezone,
        max_future=timedelta(seconds=settings.max_future_seconds),
        max_age=timedelta(days=settings.max_age_days),
        max_documents=settings.max_documents,
        max_body_bytes=settings.max_body_bytes,
        warning_topic=settings.warning_topic,
        publish_status_messages=settings.publish_status_messages,
    )


def alarm_policy(settings: IngestSettings) -> AlarmPolicy:
    """Alarms with memory's levels and timings from the ingest function's settings."""
    from gasmon.alarms import AlarmPolicy

    return AlarmPolicy(
        warning_levels=settings.thresholds,
        critical_levels=settings.critical_thresholds,
        hysteresis=settings.alarm_hysteresis_percent / 100,
        clear_after_readings=settings.alarm_clear_readings,
        clear_after=timedelta(seconds=settings.alarm_clear_seconds),
        remind_every=timedelta(minutes=settings.alarm_reminder_minutes),
    )


def sweep_policy(settings: AlarmSweepSettings) -> AlarmPolicy:
    """The alarm sweep's rules: the ingest function's alarm policy plus when an alarm is stale."""
    return alarm_policy(settings).model_copy(update={"stale_after": timedelta(minutes=settings.alarm_stale_minutes)})


def presence_policy(settings: PresenceSettings) -> PresencePolicy:
    """Both presence functions' rules from their shared settings."""
    from gasmon.presence import PresencePolicy

    return PresencePolicy(
        grace=timedelta(seconds=settings.grace_seconds),
        alert_reasons=settings.alert_reasons,
        local_timezone=settings.local_timezone,
        claim_lease=timedelta(seconds=settings.claim_lease_seconds),
    )


def query_policy(settings: QuerySettings) -> QueryPolicy:
    """The query API's rules from the query function's settings."""
    from gasmon.query import QueryPolicy

    policy = QueryPolicy(
        thresholds=settings.thresholds,
        critical_thresholds=settings.critical_thresholds,
        units=settings.units,
        local_timezone=settings.local_timezone,
        max_buckets=settings.max_buckets,
        retention=timedelta(days=settings.retention_days),
    )
    if settings.cursor_key:
        policy = policy.model_copy(update={"cursor_key": settings.cursor_key.encode()})
    return policy
