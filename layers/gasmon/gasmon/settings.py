"""Typed settings, one model per function, read from the environment once at cold start.

template.yaml sets these variables in AWS; `make local` sets them for the embedded stack.
Domain code never reads the environment: handlers turn settings into domain policies. This module
sits on the ground floor: it imports no domain module, so configuring a use case never loads it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from gasmon.defaults import DEFAULT_CRITICAL_THRESHOLDS, DEFAULT_THRESHOLDS, DEFAULT_UNITS
from gasmon.models import ANY_REASON, MAX_CHECK_DELAY_SECONDS, WARNING_TOPIC_PATTERN, GasmonModel


def environment_values(model: type[GasmonModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `model` found in `environ`: name upper-cased (or one of its alias choices),
    case-insensitive as Lambda's environment is; a JSON object is decoded for a dict field."""
    upper = {key.upper(): value for key, value in environ.items()}
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        keys = [str(key).upper() for key in alias.choices] if isinstance(alias, AliasChoices) else [name.upper()]
        raw = next((upper[key] for key in keys if key in upper), None)
        if raw is None:
            continue
        if get_origin(field.annotation) is dict and raw.lstrip().startswith("{"):
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{keys[0]} is not valid JSON: {exc}") from None
        else:
            values[name] = raw
    return values


def _positive_levels(defaults: Mapping[str, float], value: Mapping[str, float], what: str) -> dict[str, float]:
    """`value` over `defaults`, gas names lower-cased; every level must be positive."""
    merged = dict(defaults) | {gas.lower(): level for gas, level in value.items()}
    for gas, level in merged.items():
        if level <= 0:
            raise ValueError(f"{what} for {gas} must be positive")
    return merged


class _Settings(GasmonModel):
    """Settings read from the environment when constructed (keyword arguments win).

    Plain pydantic rather than pydantic-settings: the latter costs ~0.1 s of every cold start
    for features (dotenv, CLI, secrets directories) no function uses.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True, validate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        given = dict(data) if isinstance(data, Mapping) else {}
        return environment_values(cls, os.environ) | given

    local_timezone: str = "Asia/Seoul"

    @field_validator("local_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)  # at cold start rather than per request
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Seoul)") from None
        return value


class StoreSettings(_Settings):
    """Where readings live: SQLite (embedded default) or OpenSearch (AWS)."""

    reading_store: Literal["sqlite", "opensearch"] = "sqlite"
    sqlite_path: str = ".local/readings.sqlite3"
    opensearch_endpoint: str = ""
    opensearch_index: str = "gasdetect"
    # Replicas of gasmon's indices: 0 on a one-node domain (else it is yellow from day one).
    opensearch_replicas: int = Field(default=0, ge=0, le=2)
    aws_region: str = "ap-northeast-2"
    # RETENTION_DAYS: readings older than this leave the hot store (OpenSearch: the ISM policy).
    retention_days: int = Field(default=90, ge=1, le=36500)


class ThresholdSettings(StoreSettings):
    """The THRESHOLDS and CRITICAL_THRESHOLDS settings (JSON, gases left out keep their defaults),
    shared by ingest and query so the dashboard draws the lines the alarms use."""

    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    critical_thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CRITICAL_THRESHOLDS))

    @field_validator("thresholds")
    @classmethod
    def _thresholds_positive(cls, value: dict[str, float]) -> dict[str, float]:
        return _positive_levels(DEFAULT_THRESHOLDS, value, "threshold")

    @field_validator("critical_thresholds")
    @classmethod
    def _critical_positive(cls, value: dict[str, float]) -> dict[str, float]:
        return _positive_levels(DEFAULT_CRITICAL_THRESHOLDS, value, "critical threshold")


class IngestSettings(ThresholdSettings):
    """Settings of the ingest function (environment variable = field name, upper case)."""

    warning_topic: str = Field(default="pi/1", max_length=128, pattern=WARNING_TOPIC_PATTERN)
    # boto3's own AWS_ENDPOINT_URL_IOT_DATA is honoured too: that is how `make local` points it home.
    iot_data_endpoint: str = Field(
        default="", validation_alias=AliasChoices("IOT_DATA_ENDPOINT", "AWS_ENDPOINT_URL_IOT_DATA")
    )
    publish_status_messages: bool = False
    # The Firehose delivery stream every accepted reading is archived through; empty: no archive.
    archive_stream: str = ""
    max_future_seconds: int = Field(default=300, ge=0)
    max_age_days: int = Field(default=30, ge=1)
    max_documents: int = Field(default=500, ge=1, le=500)
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=10_000_000)
    # ---- Alarms: an empty ALARM_TABLE keeps plain per-reading threshold warnings ----
    alarm_table: str = ""
    alarm_hysteresis_percent: float = Field(default=10.0, ge=0, lt=100)
    alarm_clear_readings: int = Field(default=3, ge=1, le=1000)
    alarm_clear_seconds: int = Field(default=60, ge=0)
    alarm_reminder_minutes: float = Field(default=15.0, ge=0)  # 0: no reminders
    alarm_threshold_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    # ---- Per-device throttling: counters in the device registry; an empty DEVICE_TABLE turns it off ----
    device_table: str = ""
    device_requests_per_minute: int = Field(default=120, ge=1)

    @model_validator(mode="after")
    def _critical_above_warning(self) -> IngestSettings:
        if not self.alarm_table:
            return self  # plain mode never escalates: a warning raised above a default critical is fine
        for gas, critical in self.critical_thresholds.items():
            warning = self.thresholds.get(gas)
            if warning is not None and critical <= warning:
                raise ValueError(f"critical threshold for {gas} ({critical:g}) must be above its warning ({warning:g})")
        return self


class AlarmSweepSettings(IngestSettings):
    """Settings of the alarm sweep (the ingest function's alarm settings plus its own)."""

    alarm_stale_minutes: float = Field(default=60.0, ge=1)


class PresenceSettings(_Settings):
    """What both presence functions read (environment variable = field name, upper case).

    The table, queue and topic have no default: a function that needs one and finds it empty
    fails at its first use with a message naming the variable.
    """

    presence_table: str = ""
    check_queue_url: str = ""
    alert_topic_arn: str = ""
    aws_region: str = "ap-northeast-2"
    grace_seconds: int = Field(default=60, ge=0, le=MAX_CHECK_DELAY_SECONDS)
    # Comma-separated disconnectReason names (or a JSON list); `*` means every unexpected reason.
    alert_reasons: frozenset[str] = frozenset({ANY_REASON})
    claim_lease_seconds: int = Field(default=120, ge=30, le=3600)
    # Where group and location come from: nowhere, the OpenSearch index (AWS) or SQLite (local).
    device_directory: Literal["none", "sqlite", "opensearch"] = "none"
    sqlite_path: str = ".local/readings.sqlite3"
    opensearch_endpoint: str = ""
    opensearch_index: str = "gasdetect"
    # Thing name -> reading groupid, for devices whose groupid is not their thing name.
    device_groups: dict[str, str] = Field(default_factory=dict)
    # The device registry (DeviceTable): e-mails name a registered device's group and location.
    device_table: str = ""

    @field_validator("alert_reasons", mode="before")
    @classmethod
    def _reason_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else re.split(r"[\s,]+", text)
        if isinstance(value, list | tuple | set | frozenset):
            reasons = frozenset(str(item).strip().upper() for item in value if str(item).strip())
            if not reasons:
                raise ValueError("names no reason, so no disconnect would ever alert (use * for every reason)")
            for reason in reasons:
                if reason != ANY_REASON and not re.fullmatch(r"[A-Z][A-Z0-9_]*", reason):
                    raise ValueError(f"'{reason}' is not a disconnectReason name (e.g. CONNECTION_LOST)")
            return reasons
        return value

    def required(self, name: str) -> str:
        """The value of a setting an adapter cannot work without."""
        value = str(getattr(self, name))
        if not value:
            raise ValueError(f"{name.upper()} is not set; the presence functions need it")
        return value


class RecordPresenceSettings(PresenceSettings):
    """Settings of the record_presence function (the IoT rule's target)."""


class CheckPresenceSettings(PresenceSettings):
    """Settings of the check_presence function (the presence-check queue's consumer)."""


class QuerySettings(ThresholdSettings):
    """Settings of the query function behind the dashboard (GET /series, /devices, ...)."""

    # Presence's DynamoDB table; empty means no presence: devices show as `unknown`, no alerts.
    presence_table: str = ""
    # The alarm table ingest writes; empty means no alarm history: GET /alarms says `configured: false`.
    alarm_table: str = ""
    max_buckets: int = Field(default=2000, ge=10, le=10_000)
    # The device registry (DeviceTable): devices in /devices are named from it; empty: from readings.
    device_table: str = ""
    # Signs the cursors the API gives out (HMAC-SHA256); empty: a key in the source, which still
    # catches edited cursors. `make local` sets one per data directory.
    cursor_key: str = Field(default="", repr=False)
    # UNITS (JSON): the unit each gas's values are in, as the dashboard labels them; gases left out
    # keep theirs (NO2 ppb, the others ppm: the units the default levels are written in).
    units: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_UNITS))

    @field_validator("units")
    @classmethod
    def _units_short_text(cls, value: dict[str, str]) -> dict[str, str]:
        merged = dict(DEFAULT_UNITS) | {gas.lower(): unit.strip() for gas, unit in value.items()}
        for gas, unit in merged.items():
            if not re.fullmatch(r"[A-Za-z0-9%/. µ³-]{1,16}", unit):
                raise ValueError(f"unit for {gas} must be 1-16 letters, digits or % / . µ ³ - (such as ppm)")
        return merged


class SweepSettings(StoreSettings):
    """Settings of the retention sweep (deletes readings older than RETENTION_DAYS)."""

    # Rows (SQLite) deleted per statement; a sweep stops after `sweep_max_batches` of them and the
    # next hourly run goes on, so one run is bounded whatever the backlog.
    sweep_batch_size: int = Field(default=10_000, ge=100, le=1_000_000)
    sweep_max_batches: int = Field(default=100, ge=1, le=10_000)


class AuthorizerSettings(_Settings):
    """Settings of the REQUEST authorizer in front of the API (the device registry's table)."""

    device_table: str = ""
    aws_region: str = "ap-northeast-2"
