"""Ports: the small interfaces every outside system sits behind.

Each has one adapter per real system (see `gasmon.adapters`) and an in-memory fake in the unit
tests. Domain code depends on these Protocols only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gasmon.models import Reading, StoreOutcome


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
