"""In-memory fakes of gasmon's ports, for unit tests and in-process benchmarks only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gasmon.errors import PublishError, StoreUnavailableError
from gasmon.models import Reading, StoreOutcome


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
        created = set()
        for reading in readings:
            if reading.reading_id not in self.readings:
                self.readings[reading.reading_id] = reading
                created.add(reading.reading_id)
        return StoreOutcome(created=frozenset(created), existing=frozenset(existing))


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
