"""Fault injection for `gasmon-local --faults SPEC --fault-seed N` and the property tests.

Each wrapper is a decorator adapter: it implements the same port (`gasmon.ports`) as the adapter
it wraps, and fails on a seeded schedule. The layer never knows they exist: the local stack hands
the wrapped adapters to a function's `lambda_handler` (its optional adapter arguments), and the
property test wraps the in-memory fakes with the very same classes.

SPEC is a comma list of `KIND=PROBABILITY`; the kinds:

- `store-lost-reply`: the reading store commits the write, then the call fails as a timeout would;
- `store-error`: the write fails, nothing is stored;
- `store-throttle`: a partial bulk: some readings are stored, the others throttled (429), and the
  call fails as the OpenSearch adapter does when throttling outlasts its retries;
- `publish-error`: the broker does not take the message;
- `alarm-store-error`: DynamoDB throttles (the call fails, nothing written) or times out (a write
  commits, then the call fails);
- `notify-error`: SNS does not take the e-mail.

Every kind draws from its own `random.Random` seeded from (seed, kind), so the same seed gives the
same schedule of faults for the same sequence of calls.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gasmon.errors import AlarmStoreUnavailableError, NotifyError, PublishError, StoreUnavailableError
from gasmon.models import AlarmEpisode, AlarmPage, AlarmState, Reading, StoreOutcome

if TYPE_CHECKING:
    from gasmon.ports import (
        AlarmKey,
        AlarmSnapshot,
        AlarmStateStore,
        MessagePublisher,
        Notifier,
        ReadingStore,
        ThresholdScope,
    )
    from gasmon.presence_models import Email
    from gasmon_local.template import FunctionSpec

KINDS: tuple[str, ...] = (
    "store-lost-reply",
    "store-error",
    "store-throttle",
    "publish-error",
    "alarm-store-error",
    "notify-error",
)


class FaultSpecError(ValueError):
    """A `--faults` value that is not a comma list of KIND=PROBABILITY with known kinds."""


def parse_spec(text: str) -> dict[str, float]:
    """`store-lost-reply=0.3,publish-error=0.3` -> {kind: probability}; FaultSpecError otherwise."""
    faults: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, raw = part.partition("=")
        kind = kind.strip()
        if not sep:
            raise FaultSpecError(f"{part!r} is not KIND=PROBABILITY (e.g. publish-error=0.3)")
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
        try:
            probability = float(raw)
        except ValueError:
            raise FaultSpecError(f"{kind}: {raw!r} is not a probability (a number from 0 to 1)") from None
        if not 0.0 <= probability <= 1.0:
            raise FaultSpecError(f"{kind}: probability {probability:g} is not within 0..1")
        faults[kind] = probability
    return faults


@dataclass
class FaultPlan:
    """The seeded schedule: `fires(kind)` says whether the next call of that kind fails."""

    probabilities: Mapping[str, float]
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    _streams: dict[str, random.Random] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_spec(cls, spec: str, seed: int = 0) -> FaultPlan:
        return cls(parse_spec(spec), seed)

    def fires(self, kind: str) -> bool:
        probability = self.probabilities.get(kind, 0.0)
        if probability <= 0.0:
            return False
        with self._lock:
            stream = self._streams.get(kind)
            if stream is None:
                stream = self._streams[kind] = random.Random(f"{self.seed}:{kind}")
            hit = stream.random() < probability
            if hit:
                self.injected[kind] += 1
        return hit

    def draw(self, kind: str) -> random.Random:
        """The kind's stream, for a fault's details (which items a throttle hits)."""
        with self._lock:
            stream = self._streams.get(kind)
            if stream is None:
                stream = self._streams[kind] = random.Random(f"{self.seed}:{kind}")
        return stream

    def describe(self) -> str:
        """One line for the banner: `store-lost-reply=0.3, publish-error=0.3 (seed 7)`."""
        active = ", ".join(f"{kind}={p:g}" for kind, p in self.probabilities.items() if p > 0)
        return f"{active} (seed {self.seed})" if active else "none"

    def __bool__(self) -> bool:
        return any(p > 0 for p in self.probabilities.values())


class FaultyReadingStore:
    """A `ReadingStore` that loses replies, fails, or stores part of a bulk, on the plan's schedule."""

    def __init__(self, inner: ReadingStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        if self.plan.fires("store-error"):
            raise StoreUnavailableError("injected fault store-error: the write failed", retry_after_seconds=1)
        if len(readings) and self.plan.fires("store-throttle"):
            stream = self.plan.draw("store-throttle")
            taken = [r for r in readings if stream.random() < 0.5]
            if taken:
                self.inner.put_readings(taken)
            raise StoreUnavailableError(
                f"injected fault store-throttle: {len(readings) - len(taken)} readings answered 429",
                retry_after_seconds=1,
            )
        outcome = self.inner.put_readings(readings)
        if self.plan.fires("store-lost-reply"):
            raise StoreUnavailableError(
                "injected fault store-lost-reply: committed, then timed out", retry_after_seconds=1
            )
        return outcome

    def __getattr__(self, name: str) -> Any:  # the read side and counters of the real store
        return getattr(self.inner, name)


class FaultyPublisher:
    """A `MessagePublisher` whose broker refuses messages on the plan's schedule."""

    def __init__(self, inner: MessagePublisher, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        if self.plan.fires("publish-error"):
            raise PublishError(f"injected fault publish-error on {topic}")
        self.inner.publish(topic, payload, qos)


class FaultyAlarmStore:
    """An `AlarmStateStore` that throttles (fails before) or times out (fails after a committed
    write) on the plan's schedule."""

    def __init__(self, inner: AlarmStateStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def _throttled(self, operation: str) -> None:
        if self.plan.fires("alarm-store-error"):
            raise AlarmStoreUnavailableError(f"injected fault alarm-store-error: {operation} throttled")

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        self._throttled("load")
        return self.inner.load(keys, scopes)

    def save(self, state: AlarmState, episodes: Sequence[AlarmEpisode] = ()) -> AlarmState:
        if not self.plan.fires("alarm-store-error"):
            return self.inner.save(state, episodes)
        if self.plan.draw("alarm-store-error").random() < 0.5:
            raise AlarmStoreUnavailableError("injected fault alarm-store-error: save throttled")
        self.inner.save(state, episodes)
        raise AlarmStoreUnavailableError("injected fault alarm-store-error: save committed, then timed out")

    def list_alarms(
        self,
        since: datetime,
        until: datetime | None = None,
        device: str | None = None,
        gas: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlarmPage:
        self._throttled("list_alarms")
        return self.inner.list_alarms(since, until, device, gas, limit, cursor)

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        self._throttled("open_alarms")
        return self.inner.open_alarms(device, gas)

    def due_states(self, limit: int = 1000) -> list[AlarmState]:
        self._throttled("due_states")
        return self.inner.due_states(limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FaultyNotifier:
    """A `Notifier` whose SNS topic refuses e-mails on the plan's schedule."""

    def __init__(self, inner: Notifier, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def send(self, email: Email) -> None:
        if self.plan.fires("notify-error"):
            raise NotifyError("injected fault notify-error: SNS did not take the e-mail")
        self.inner.send(email)


def fault_adapters(plan: FaultPlan) -> Callable[[FunctionSpec, Any], dict[str, Any]]:
    """The local runtime's adapter hook: each function's faulty adapters, built once per function."""
    built: dict[str, dict[str, Any]] = {}

    def adapters(spec: FunctionSpec, module: Any) -> dict[str, Any]:
        if spec.logical_id not in built:
            built[spec.logical_id] = handler_adapters(spec.logical_id, module, plan)
        return built[spec.logical_id]

    return adapters


def handler_adapters(logical_id: str, module: Any, plan: FaultPlan) -> dict[str, Any]:
    """The faulty adapters to hand a function's `lambda_handler`, wrapping the ones it would build.

    Called in the function's environment (its cached factories read its settings). Functions
    without a faultable port get nothing and run as they are.
    """
    if not plan:
        return {}
    adapters: dict[str, Any] = {}
    if logical_id in ("IngestFunction", "AlarmSweepFunction"):
        if logical_id == "IngestFunction":
            adapters["store"] = FaultyReadingStore(module._store(), plan)
        adapters["publisher"] = FaultyPublisher(module._publisher(), plan)
        alarm_store = module._alarm_store()
        if alarm_store is not None:
            adapters["alarm_store"] = FaultyAlarmStore(alarm_store, plan)
    elif logical_id in ("RecordPresenceFunction", "CheckPresenceFunction"):
        adapters["notifier"] = FaultyNotifier(module._ports().notifier, plan)
    return adapters
