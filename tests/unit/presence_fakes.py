"""In-memory fakes for the presence ports, built on the domain's own rules (`apply_event`,
`can_claim`), plus helpers shared by the presence unit tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gasmon.errors import NotifyError, PresenceStoreError
from gasmon.presence import PresencePorts, apply_event, can_claim, claimed, marked_sent
from gasmon.presence_models import (
    CheckRequest,
    DeviceInfo,
    Email,
    LifecycleEvent,
    NoticeKind,
    PresenceState,
    RecordOutcome,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def lifecycle(name: str, **changes: Any) -> LifecycleEvent:
    """An event file as a `LifecycleEvent`, with fields (AWS names) changed."""
    return LifecycleEvent.model_validate(load_event(name) | changes)


LOST_AT = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)  # events/presence_disconnected_lost.json


def at(seconds: float) -> datetime:
    """A moment `seconds` after the lost connection of the sample events."""
    return LOST_AT + timedelta(seconds=seconds)


class InMemoryPresenceRepository:
    """A `PresenceRepository` in a dict, applying exactly the domain's rules."""

    def __init__(self) -> None:
        self.states: dict[str, PresenceState] = {}
        self.fail_marks = False

    def record(self, event: LifecycleEvent, now: datetime) -> RecordOutcome:
        outcome = apply_event(self.states.get(event.client_id), event)
        self.states[event.client_id] = outcome.state
        return outcome

    def get(self, client_id: str) -> PresenceState | None:
        return self.states.get(client_id)

    def claim_notice(
        self, kind: NoticeKind, client_id: str, episode_id: str, token: str, now: datetime, stale_before: datetime
    ) -> bool:
        state = self.states.get(client_id)
        if state is None or not can_claim(kind, state, episode_id, token, stale_before):
            return False
        self.states[client_id] = claimed(state, kind, episode_id, token, now)
        return True

    def mark_notice_sent(self, kind: NoticeKind, client_id: str, episode_id: str, token: str, now: datetime) -> None:
        if self.fail_marks:
            raise PresenceStoreError("throttled")
        self.states[client_id] = marked_sent(self.states[client_id], kind, episode_id, token, now)


@dataclass
class RecordingScheduler:
    scheduled: list[tuple[CheckRequest, int]] = field(default_factory=list)

    def schedule(self, check: CheckRequest, delay_seconds: int) -> None:
        self.scheduled.append((check, delay_seconds))

    def take(self) -> list[CheckRequest]:
        checks = [check for check, _ in self.scheduled]
        self.scheduled.clear()
        return checks


@dataclass
class RecordingNotifier:
    sent: list[Email] = field(default_factory=list)
    failures_left: int = 0

    def send(self, email: Email) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise NotifyError("SNS is throttling")
        self.sent.append(email)


@dataclass
class StaticDirectory:
    info: DeviceInfo | None = None

    def describe(self, client_id: str, thing_name: str) -> DeviceInfo | None:
        return self.info


@dataclass
class FakePorts:
    repository: InMemoryPresenceRepository = field(default_factory=InMemoryPresenceRepository)
    scheduler: RecordingScheduler = field(default_factory=RecordingScheduler)
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    directory: StaticDirectory = field(default_factory=StaticDirectory)

    def ports(self) -> PresencePorts:
        return PresencePorts(self.repository, self.scheduler, self.notifier, self.directory)


@dataclass
class FakeLambdaContext:
    function_name: str = "gasmon-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-test"
    aws_request_id: str = "req-1"
