"""Typed settings, one model per function, read from the environment once at cold start.

template.yaml sets these variables in AWS; `make local` sets them for the embedded stack.
Domain code never reads the environment: handlers turn settings into domain policies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gasmon.ingest import DEFAULT_THRESHOLDS, IngestPolicy
from gasmon.query import QueryPolicy


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    local_timezone: str = "Asia/Seoul"

    @field_validator("local_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone, at cold start rather than per request
        return value


class StoreSettings(_Settings):
    """Where readings live: SQLite (embedded default) or OpenSearch (AWS)."""

    reading_store: Literal["sqlite", "opensearch"] = "sqlite"
    sqlite_path: str = ".local/readings.sqlite3"
    opensearch_endpoint: str = ""
    opensearch_index: str = "gasdetect"
    aws_region: str = "ap-northeast-2"


class IngestSettings(StoreSettings):
    """Settings of the ingest function (environment variable = field name, upper case)."""

    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    warning_topic: str = "pi/1"
    # boto3's own AWS_ENDPOINT_URL_IOT_DATA is honoured too: that is how `make local` points it home.
    iot_data_endpoint: str = Field(
        default="", validation_alias=AliasChoices("IOT_DATA_ENDPOINT", "AWS_ENDPOINT_URL_IOT_DATA")
    )
    publish_status_messages: bool = False
    max_future_seconds: int = Field(default=300, ge=0)
    max_age_days: int = Field(default=30, ge=1)
    max_documents: int = Field(default=500, ge=1, le=500)
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=10_000_000)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_positive(cls, value: dict[str, float]) -> dict[str, float]:
        merged = dict(DEFAULT_THRESHOLDS) | {gas.lower(): level for gas, level in value.items()}
        for gas, level in merged.items():
            if level <= 0:
                raise ValueError(f"threshold for {gas} must be positive")
        return merged

    def policy(self) -> IngestPolicy:
        return IngestPolicy(
            thresholds=self.thresholds,
            local_timezone=self.local_timezone,
            max_future=timedelta(seconds=self.max_future_seconds),
            max_age=timedelta(days=self.max_age_days),
            max_documents=self.max_documents,
            max_body_bytes=self.max_body_bytes,
            warning_topic=self.warning_topic,
            publish_status_messages=self.publish_status_messages,
        )


class QuerySettings(StoreSettings):
    """Settings of the query function behind the dashboard (GET /series, /devices, ...)."""

    # The same THRESHOLDS value as the ingest function, so the dashboard draws the lines it warns at.
    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    # Presence's DynamoDB table; empty means no presence: devices show as `unknown`, no alerts.
    presence_table: str = ""
    max_buckets: int = Field(default=2000, ge=10, le=10_000)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_positive(cls, value: dict[str, float]) -> dict[str, float]:
        merged = dict(DEFAULT_THRESHOLDS) | {gas.lower(): level for gas, level in value.items()}
        for gas, level in merged.items():
            if level <= 0:
                raise ValueError(f"threshold for {gas} must be positive")
        return merged

    def policy(self) -> QueryPolicy:
        return QueryPolicy(thresholds=self.thresholds, max_buckets=self.max_buckets)
