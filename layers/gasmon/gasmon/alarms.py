"""Alarms with memory: one message per episode, escalation, reminders, clear with hysteresis.

Two parts, both free of AWS SDKs and of the environment:

- a pure state machine, `apply_reading(state, reading, levels, policy) -> Step`, that turns the
  remembered `AlarmState` of one (device, gas) and one new reading into the next state, the
  messages to publish and the episode (history record) that changed;
- the `Alarms` use case that ingest calls with the readings a POST stored for the first time:
  one batched read of every touched state, the state machine, conditional writes (re-read and
  re-apply on a conflict), then publishing, remembering what could not be published.

Rules (docs/alarms.md explains them for operators):
- an alarm opens on a reading at or above the gas's warning level (or straight at critical);
- it escalates once, warning -> critical, and never steps back down while open;
- it clears on the reading that makes both true: at least `clear_after_readings` consecutive
  readings below `warning - band`, spanning at least `clear_after` from the first of them;
- while open, a reading at or above the clear line sends a reminder when `remind_every` has passed
  since the last open/escalate/remind message (reading time, not wall time);
- readings for one (device, gas) apply in `created_at` order; a reading older than the newest
  reading that changed the state (`watermark`) is ignored (stored, never alarmed on);
- ingest passes only readings the reading store did not already have, so a duplicate never
  reaches this module and never causes a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from gasmon.errors import AlarmConflictError, AlarmStoreUnavailableError, PublishError
from gasmon.models import (
    AlarmEpisode,
    AlarmLevel,
    AlarmMessage,
    AlarmOutcome,
    AlarmState,
    ClearMessage,
    GasmonModel,
    GasThresholds,
    OpenAlarm,
    OwedMessage,
    Reading,
)
from gasmon.readings import DEFAULT_CRITICAL_THRESHOLDS, DEFAULT_THRESHOLDS, device_of, warnings_for

if TYPE_CHECKING:
    from gasmon.ports import AlarmKey, AlarmStateStore, MessagePublisher, ThresholdScope


AlarmEvent = Literal["open", "escalate", "remind"]


class GasLevels(GasmonModel):
    """The resolved levels for one gas at one device: warning, optional critical, hysteresis band."""

    model_config = ConfigDict(frozen=True)

    warning: float = Field(gt=0)
    critical: float | None = Field(default=None, gt=0)
    band: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> GasLevels:
        if self.critical is not None and self.critical <= self.warning:
            raise ValueError(f"critical ({self.critical:g}) must be above warning ({self.warning:g})")
        if self.band >= self.warning:
            raise ValueError(f"band ({self.band:g}) must be below the warning level ({self.warning:g})")
        return self

    @property
    def clear_below(self) -> float:
        """An open alarm counts a reading towards its clear only when it is below this line."""
        return self.warning - self.band


class AlarmPolicy(GasmonModel):
    """The alarm rules of one deployment (built from settings)."""

    model_config = ConfigDict(frozen=True)

    warning_levels: Mapping[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    critical_levels: Mapping[str, float] = Field(default_factory=lambda: dict(DEFAULT_CRITICAL_THRESHOLDS))
    hysteresis: float = Field(default=0.10, ge=0, lt=1)  # band = this fraction of the warning level
    clear_after_readings: int = Field(default=3, ge=1)
    clear_after: timedelta = timedelta(seconds=60)
    remind_every: timedelta = timedelta(minutes=15)  # zero: no reminders
    max_write_attempts: int = Field(default=4, ge=1)  # per key and request, on version conflicts
    max_publish_attempts: int = Field(default=5, ge=1)  # per message, across requests
    readings_per_write: int = Field(default=100, ge=2)  # bounds the episodes in one transaction


def alarm_id_for(device: str, gas: str, opening_reading_id: str) -> str:
    """A deterministic episode id: the same opening reading always names the same episode."""
    key = "\x1f".join((device, gas, opening_reading_id))
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def resolve_levels(
    gas: str, policy: AlarmPolicy, overrides: Iterable[Mapping[str, GasThresholds] | None] = ()
) -> tuple[GasLevels | None, list[str]]:
    """The levels for `gas`: policy defaults, then each override layer (group, then device) on top.

    A field an override leaves out is inherited; a band nobody set is `hysteresis` times the
    warning level. A layer that would make the levels invalid (critical not above warning, band
    not below it) is skipped and named in the returned problems. None: this gas has no alarm.
    """
    warning = policy.warning_levels.get(gas)
    critical = policy.critical_levels.get(gas)
    band: float | None = None
    problems: list[str] = []
    levels: GasLevels | None = None
    if warning is not None:
        try:
            levels = _levels(warning, critical, band, policy)
        except ValidationError:
            problems.append(f"{gas}: default critical level is not above the warning level; no escalation")
            critical = None
            levels = _levels(warning, critical, band, policy)
    for layer in overrides:
        override = layer.get(gas) if layer else None
        if override is None:
            continue
        candidate = (
            override.warning if override.warning is not None else warning,
            override.critical if override.critical is not None else critical,
            override.band if override.band is not None else band,
        )
        if candidate[0] is None:
            problems.append(f"{gas}: an override sets no warning level and there is no default; ignored")
            continue
        try:
            levels = _levels(candidate[0], candidate[1], candidate[2], policy)
        except ValidationError as exc:
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors(include_url=False))
            problems.append(f"{gas}: override ignored ({reason})")
            continue
        warning, critical, band = candidate
    return levels, problems


def _levels(warning: float, critical: float | None, band: float | None, policy: AlarmPolicy) -> GasLevels:
    return GasLevels(warning=warning, critical=critical, band=band if band is not None else warning * policy.hysteresis)


class Notice(GasmonModel):
    """A message the state machine wants published, with the reading that caused it."""

    model_config = ConfigDict(frozen=True)

    reading_id: str
    message: AlarmMessage | ClearMessage

    @property
    def label(self) -> str:
        """How the POST's answer lists it: `no2 warning`, `no2 critical`, `no2 reminder`, `no2 clear`."""
        message = self.message
        if isinstance(message, ClearMessage):
            return f"{message.gas} clear"
        if message.event == "remind":
            return f"{message.gas} reminder"
        return f"{message.gas} {message.level}"


class Step(GasmonModel):
    """The result of applying readings: the next state, what to publish, which episodes changed."""

    model_config = ConfigDict(frozen=True)

    state: AlarmState
    notices: tuple[Notice, ...] = ()
    episodes: tuple[AlarmEpisode, ...] = ()  # latest version of each episode touched


def apply_reading(state: AlarmState, reading: Reading, levels: GasLevels, policy: AlarmPolicy) -> Step:
    """One transition of the alarm state machine for `state`'s (device, gas).

    Returns `Step(state)` with the very same state object when the reading changes nothing (late,
    below the warning level while closed, or unremarkable while open): then nothing is written.
    """
    at = reading.created_at
    if state.watermark is not None and at < state.watermark:
        return Step(state=state)  # late: older than the newest reading that changed the state
    alarm = state.alarm
    if alarm is None:
        if reading.value < levels.warning:
            return Step(state=state)
        critical = levels.critical is not None and reading.value >= levels.critical
        alarm = OpenAlarm(
            alarm_id=alarm_id_for(state.device, state.gas, reading.reading_id),
            groupid=reading.groupid,
            sensorid=reading.sensorid,
            level="critical" if critical else "warning",
            threshold=levels.warning,
            started_at=at,
            peak=reading.value,
            peak_at=at,
            last_notified_at=at,
            critical=levels.critical,
        )
        return Step(
            state=state.model_copy(update={"alarm": alarm, "watermark": at}),
            notices=(_notice("open", alarm, reading, levels, state),),
            episodes=(alarm.episode(state.device, state.gas),),
        )

    updates: dict[str, Any] = {}
    event: AlarmEvent | None = None
    if reading.value > alarm.peak:
        updates.update(peak=reading.value, peak_at=at)
    if reading.value < levels.clear_below:
        count = alarm.below_count + 1
        since = alarm.below_since or at
        if count >= policy.clear_after_readings and at - since >= policy.clear_after:
            return Step(
                state=state.model_copy(update={"alarm": None, "watermark": at}),
                notices=(Notice(reading_id=reading.reading_id, message=_clear(alarm, reading, levels, state)),),
                episodes=(alarm.episode(state.device, state.gas, ended_at=at),),
            )
        updates.update(below_count=count, below_since=since)
    else:
        if alarm.below_count:
            updates.update(below_count=0, below_since=None)  # back above the line: start again
        if alarm.level == "warning" and levels.critical is not None and reading.value >= levels.critical:
            updates.update(level="critical", last_notified_at=at, critical=levels.critical)
            event = "escalate"
        elif policy.remind_every > timedelta(0) and at - alarm.last_notified_at >= policy.remind_every:
            updates.update(last_notified_at=at)
            event = "remind"
    if not updates:
        return Step(state=state)
    alarm = alarm.model_copy(update=updates)
    new_state = state.model_copy(update={"alarm": alarm, "watermark": at})
    notices = (_notice(event, alarm, reading, levels, state),) if event else ()
    episode_changed = "peak" in updates or event == "escalate"
    episodes = (alarm.episode(state.device, state.gas),) if episode_changed else ()
    return Step(state=new_state, notices=notices, episodes=episodes)


def apply_readings(
    state: AlarmState, readings: Iterable[Reading], levels: GasLevels | None, policy: AlarmPolicy
) -> Step:
    """Apply readings of one (device, gas) in reading-time order (ties by reading id).

    `levels` None (no thresholds for this gas) changes nothing. Episodes are folded so each
    appears once, in its latest version.
    """
    if levels is None:
        return Step(state=state)
    notices: list[Notice] = []
    episodes: dict[str, AlarmEpisode] = {}
    for reading in sorted(readings, key=lambda r: (r.created_at, r.reading_id)):
        step = apply_reading(state, reading, levels, policy)
        state = step.state
        notices.extend(step.notices)
        episodes.update((e.alarm_id, e) for e in step.episodes)
    return Step(state=state, notices=tuple(notices), episodes=tuple(episodes.values()))


def _notice(event: AlarmEvent, alarm: OpenAlarm, reading: Reading, levels: GasLevels, state: AlarmState) -> Notice:
    level: AlarmLevel = alarm.level
    threshold = levels.critical if level == "critical" and levels.critical is not None else levels.warning
    message = AlarmMessage(
        warning=f"{state.gas} warning",  # the seed's exact text, on every message of an open alarm
        gas=state.gas,
        value=reading.value,
        threshold=threshold,
        sensorid=reading.sensorid,
        groupid=reading.groupid,
        createdtime=reading.createdtime,
        gps=reading.gps,
        level=level,
        event=event,
        alarm_id=alarm.alarm_id,
        device=state.device,
        peak=alarm.peak,
        started_at=alarm.started_at,
    )
    return Notice(reading_id=reading.reading_id, message=message)


def _clear(alarm: OpenAlarm, reading: Reading, levels: GasLevels, state: AlarmState) -> ClearMessage:
    return ClearMessage(
        clear=f"{state.gas} clear",
        alarm_id=alarm.alarm_id,
        device=state.device,
        gas=state.gas,
        level=alarm.level,
        value=reading.value,
        threshold=levels.warning,
        clear_below=levels.clear_below,
        peak=alarm.peak,
        started_at=alarm.started_at,
        ended_at=reading.created_at,
        sensorid=reading.sensorid,
        groupid=reading.groupid,
        createdtime=reading.createdtime,
        gps=reading.gps,
    )


# ---- The use case ingest calls ----


class _Outbound(GasmonModel):
    key: tuple[str, str]
    topic: str
    payload: dict[str, Any]
    attempts: int = 0  # failed attempts so far (an owed message's count)
    reading_id: str | None = None  # None for a redelivery
    label: str
    owe_on_failure: bool = True


class Alarms:
    """Alarm evaluation with state in an `AlarmStateStore`; ingest hands it each POST's new readings."""

    def __init__(self, store: AlarmStateStore, policy: AlarmPolicy) -> None:
        self.store = store
        self.policy = policy

    def process(
        self, readings: Sequence[Reading], publisher: MessagePublisher, topic_for: Callable[[str], str]
    ) -> AlarmOutcome:
        """Evaluate, persist and publish alarms for readings stored for the first time.

        State is written before publishing: a conditional write decides which concurrent request
        opens an alarm, and only that request publishes it. A publish that fails after its state
        was written is remembered in the state (`owed`) and sent again with the key's next reading,
        at most `max_publish_attempts` times. When the state cannot be read or written, the
        readings of the affected keys fall back to plain threshold warnings: a repeated warning
        beats a missed one.
        """
        outcome = AlarmOutcome()
        by_key: dict[AlarmKey, list[Reading]] = {}
        for reading in readings:
            by_key.setdefault((device_of(reading), reading.gas), []).append(reading)
        if not by_key:
            return outcome
        scopes: dict[ThresholdScope, None] = {}
        for (device, _), rs in by_key.items():
            scopes[("group", rs[0].groupid)] = None
            scopes[("device", device)] = None
        try:
            snapshot = self.store.load(list(by_key), list(scopes))
        except AlarmStoreUnavailableError as exc:
            outcome.problems.append(f"alarm state unavailable, plain warnings instead: {exc}")
            for key, rs in by_key.items():
                self._degrade(key, rs, None, publisher, topic_for, outcome)
            return outcome
        outcome.problems.extend(snapshot.problems)

        outbound: list[_Outbound] = []
        states: dict[AlarmKey, AlarmState] = {}
        fallback: list[tuple[AlarmKey, list[Reading], GasLevels | None]] = []
        for key, rs in by_key.items():
            device, gas = key
            layers = [snapshot.overrides.get(("group", rs[0].groupid)), snapshot.overrides.get(("device", device))]
            levels, problems = resolve_levels(gas, self.policy, layers)
            outcome.problems.extend(f"{device}: {p}" for p in problems)
            state = snapshot.states.get(key) or AlarmState(device=device, gas=gas)
            states[key], key_outbound, failure, uncommitted = self._commit(key, state, rs, levels, topic_for, outcome)
            outbound.extend(key_outbound)
            if isinstance(failure, AlarmStoreUnavailableError):
                outcome.problems.append(f"{device}/{gas}: alarm state not written, plain warnings instead: {failure}")
                fallback.append((key, uncommitted, levels))
            elif failure is not None:
                # Other requests kept winning this key: they apply the newer readings; these are dropped.
                outcome.problems.append(f"{device}/{gas}: gave up after {self.policy.max_write_attempts} conflicts")

        unsent: dict[AlarmKey, list[_Outbound]] = {}
        for item in outbound:
            if item.key in unsent:  # an earlier message of this key failed: keep the order, owe this one too
                unsent[item.key].append(item)
                continue
            try:
                publisher.publish(item.topic, item.payload)
            except PublishError:
                outcome.failed += 1
                item = item.model_copy(update={"attempts": item.attempts + 1})
                unsent[item.key] = [item]
                continue
            outcome.published += 1
            if item.reading_id is not None:
                outcome.labels.setdefault(item.reading_id, []).append(item.label)
        for key, items in unsent.items():
            self._owe(key, states[key], items, outcome)
        for key, uncommitted, levels in fallback:  # after what was committed, to keep the order
            self._degrade(key, uncommitted, levels, publisher, topic_for, outcome)
        return outcome

    def _commit(
        self,
        key: AlarmKey,
        state: AlarmState,
        readings: list[Reading],
        levels: GasLevels | None,
        topic_for: Callable[[str], str],
        outcome: AlarmOutcome,
    ) -> tuple[AlarmState, list[_Outbound], Exception | None, list[Reading]]:
        """Apply one key's readings and write its state, `readings_per_write` readings at a time.

        Returns the state as last written, the messages to publish, and, when a write could not be
        made, the failure and the readings it left uncommitted (earlier chunks stay committed and
        their messages are still returned).
        """
        outbound: list[_Outbound] = []
        size = self.policy.readings_per_write
        ordered = sorted(readings, key=lambda r: (r.created_at, r.reading_id))
        for start in range(0, len(ordered), size):
            try:
                state, chunk_outbound = self._commit_chunk(
                    key, state, ordered[start : start + size], levels, topic_for, outcome
                )
            except (AlarmConflictError, AlarmStoreUnavailableError) as failure:
                return state, outbound, failure, ordered[start:]
            outbound.extend(chunk_outbound)
        return state, outbound, None, []

    def _commit_chunk(
        self,
        key: AlarmKey,
        state: AlarmState,
        chunk: list[Reading],
        levels: GasLevels | None,
        topic_for: Callable[[str], str],
        outcome: AlarmOutcome,
    ) -> tuple[AlarmState, list[_Outbound]]:
        """One conditional write; on a version conflict, re-read and re-apply the same readings."""
        for attempt in range(self.policy.max_write_attempts):
            step = apply_readings(state, chunk, levels, self.policy)
            new_state = step.state.model_copy(update={"owed": ()}) if state.owed else step.state
            if new_state == state:
                return state, []  # nothing changed: nothing to write, nothing to say
            try:
                saved = self.store.save(new_state, step.episodes)
            except AlarmConflictError:
                outcome.conflicts += 1
                if attempt + 1 == self.policy.max_write_attempts:
                    raise
                state = self.store.load([key]).states.get(key) or AlarmState(device=key[0], gas=key[1])
                continue
            redelivered = [
                _Outbound(key=key, topic=o.topic, payload=o.payload, attempts=o.attempts, label=_label(o.payload))
                for o in state.owed
            ]
            new = [
                _Outbound(
                    key=key,
                    topic=topic_for(n.message.groupid),
                    payload=n.message.model_dump(mode="json"),
                    reading_id=n.reading_id,
                    label=n.label,
                    # A failed reminder is not owed: the next one, N minutes on, says the same.
                    owe_on_failure=n.message.event != "remind",
                )
                for n in step.notices
            ]
            return saved, redelivered + new
        raise AssertionError("unreachable: the loop returns or raises")

    def _owe(self, key: AlarmKey, state: AlarmState, items: list[_Outbound], outcome: AlarmOutcome) -> None:
        """Record messages that could not be published in the key's state, for the next request."""
        owed: list[OwedMessage] = []
        for item in items:
            if not item.owe_on_failure or item.attempts >= self.policy.max_publish_attempts:
                outcome.lost += 1
                outcome.problems.append(f"{key[0]}/{key[1]}: gave up publishing {item.label!r} to {item.topic}")
                continue
            owed.append(OwedMessage(topic=item.topic, payload=item.payload, attempts=max(item.attempts, 1)))
        if not owed:
            return
        for attempt in range(self.policy.max_write_attempts):
            try:
                self.store.save(state.model_copy(update={"owed": (*state.owed, *owed)}))
                return
            except AlarmConflictError:
                outcome.conflicts += 1
                if attempt + 1 < self.policy.max_write_attempts:
                    try:
                        state = self.store.load([key]).states.get(key) or AlarmState(device=key[0], gas=key[1])
                    except AlarmStoreUnavailableError:
                        break
            except AlarmStoreUnavailableError:
                break
        outcome.lost += len(owed)
        outcome.problems.append(f"{key[0]}/{key[1]}: {len(owed)} unpublished alarm messages could not be recorded")

    def _degrade(
        self,
        key: AlarmKey,
        readings: list[Reading],
        levels: GasLevels | None,
        publisher: MessagePublisher,
        topic_for: Callable[[str], str],
        outcome: AlarmOutcome,
    ) -> None:
        """Plain mode for one key: a warning per reading at or above its warning level."""
        warning = levels.warning if levels is not None else self.policy.warning_levels.get(key[1])
        if warning is None:
            return
        outcome.degraded += 1
        for reading in readings:
            for message in warnings_for([reading], {key[1]: warning}):
                try:
                    publisher.publish(topic_for(message.groupid), message.model_dump())
                except PublishError:
                    outcome.failed += 1
                    outcome.lost += 1
                    continue
                outcome.published += 1
                outcome.labels.setdefault(reading.reading_id, []).append(message.warning)


def _label(payload: Mapping[str, Any]) -> str:
    return str(payload.get("clear") or payload.get("warning") or payload.get("event") or "alarm")
