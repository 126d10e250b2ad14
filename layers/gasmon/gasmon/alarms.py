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
- readings for one (device, gas) apply in (`created_at`, `reading_id`) order; a reading at or
  before the state's watermark is done or late and changes nothing. While an alarm is open every
  reading moves the watermark, so a backdated reading never counts towards a clear against newer
  data; while closed only a change moves it (no write per quiet reading);
- effects are idempotent by key, not by "was this reading new": ingest hands in every accepted
  reading, duplicates included, and the watermark says what is already done. Messages are written
  to the state's outbox (`owed`) in the same conditional write as the transition, published, then
  removed; a request that dies in between leaves them for the next request of that key or for the
  stale sweep (`sweep`), so each is published at least once (consumers dedupe by `alarm_id`,
  `event` and `reading_id`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
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
    max_publish_attempts: int = Field(default=20, ge=1)  # per message, across requests and sweeps
    stale_after: timedelta = timedelta(minutes=60)  # the sweep closes an alarm silent this long
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
    if state.watermark is not None and (at, reading.reading_id) <= (state.watermark, state.watermark_id):
        return Step(state=state)  # done (a retry) or late: at or before the newest reading applied
    mark = {"watermark": at, "watermark_id": reading.reading_id}
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
            state=state.model_copy(update={"alarm": alarm, **mark}),
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
                state=state.model_copy(update={"alarm": None, **mark}),
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
    if not updates:  # nothing to say, but newer data: later backdated readings must not count
        return Step(state=state.model_copy(update=mark))
    alarm = alarm.model_copy(update=updates)
    new_state = state.model_copy(update={"alarm": alarm, **mark})
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
        reading_id=reading.reading_id,
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
        reading_id=reading.reading_id,
    )


def stale_clear(state: AlarmState, now: datetime, policy: AlarmPolicy, topic: str) -> Step:
    """Close the open alarm of a device silent for `policy.stale_after` (by reading time).

    Returns `Step(state)` unchanged when there is no alarm or the device spoke recently enough.
    The clear message says `reason: stale` and carries no reading id.
    """
    alarm = state.alarm
    if alarm is None or state.watermark is None or now - state.watermark < policy.stale_after:
        return Step(state=state)
    message = ClearMessage(
        clear=f"{state.gas} clear",
        alarm_id=alarm.alarm_id,
        device=state.device,
        gas=state.gas,
        level=alarm.level,
        value=alarm.peak,
        threshold=alarm.threshold,
        clear_below=alarm.threshold,
        peak=alarm.peak,
        started_at=alarm.started_at,
        ended_at=now,
        sensorid=alarm.sensorid,
        groupid=alarm.groupid,
        createdtime=_ts_text(now),
        reason="stale",
    )
    owed = OwedMessage(topic=topic, payload=message.model_dump(mode="json"), label=f"{state.gas} clear")
    return Step(
        state=state.model_copy(update={"alarm": None, "owed": (*state.owed, owed)}),
        episodes=(alarm.episode(state.device, state.gas, ended_at=now),),
    )


def _ts_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- The use case ingest calls ----


class Alarms:
    """Alarm evaluation with state in an `AlarmStateStore`; ingest hands it each POST's readings."""

    def __init__(self, store: AlarmStateStore, policy: AlarmPolicy) -> None:
        self.store = store
        self.policy = policy

    def process(
        self, readings: Sequence[Reading], publisher: MessagePublisher, topic_for: Callable[[str], str]
    ) -> AlarmOutcome:
        """Evaluate, persist and publish alarms for every accepted reading of a request.

        Duplicates are welcome: a reading at or before its key's watermark changes nothing, so a
        retried POST only finishes what is still owed. Per key: one conditional write puts the
        transition and its messages (the outbox, `owed`) in the state; the messages are published;
        a second write removes the published ones. A conditional write decides which concurrent
        request opens an alarm. A message still unpublished at the end is counted in
        `outcome.pending` (ingest then answers 503 so the device retries). When the state cannot be
        read or written, the readings of the affected keys fall back to plain threshold warnings
        (a repeated warning beats a missed one); a key with a reading at or over its level counts
        as pending too, so the device's retry applies that reading to the state.
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
                outcome.pending += self._over(key, rs, None)  # the retry applies them to the state
            return outcome
        outcome.problems.extend(snapshot.problems)

        states: dict[AlarmKey, AlarmState] = {}
        fallback: list[tuple[AlarmKey, list[Reading], GasLevels | None]] = []
        for key, rs in by_key.items():
            device, gas = key
            layers = [snapshot.overrides.get(("group", rs[0].groupid)), snapshot.overrides.get(("device", device))]
            levels, problems = resolve_levels(gas, self.policy, layers)
            outcome.problems.extend(f"{device}: {p}" for p in problems)
            state = snapshot.states.get(key) or AlarmState(device=device, gas=gas)
            states[key], failure, uncommitted = self._commit(key, state, rs, levels, topic_for, outcome)
            if isinstance(failure, AlarmStoreUnavailableError):
                outcome.problems.append(f"{device}/{gas}: alarm state not written, plain warnings instead: {failure}")
                fallback.append((key, uncommitted, levels))
                outcome.pending += self._over(key, uncommitted, levels)  # the retry applies them to the state
            elif failure is not None:
                outcome.problems.append(f"{device}/{gas}: gave up after {self.policy.max_write_attempts} conflicts")
                outcome.pending += self._over(key, uncommitted, levels)  # the retry applies them

        for key, state in states.items():
            if state.owed:
                self.deliver(key, state, publisher, outcome)
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
    ) -> tuple[AlarmState, Exception | None, list[Reading]]:
        """Apply one key's readings and write its state, `readings_per_write` readings at a time.

        Returns the state as last written and, when a write could not be made, the failure and
        the readings it left uncommitted (earlier chunks stay committed, their messages owed).
        """
        size = self.policy.readings_per_write
        ordered = sorted(readings, key=lambda r: (r.created_at, r.reading_id))
        for start in range(0, len(ordered), size):
            try:
                state = self._commit_chunk(key, state, ordered[start : start + size], levels, topic_for, outcome)
            except (AlarmConflictError, AlarmStoreUnavailableError) as failure:
                return state, failure, ordered[start:]
        return state, None, []

    def _commit_chunk(
        self,
        key: AlarmKey,
        state: AlarmState,
        chunk: list[Reading],
        levels: GasLevels | None,
        topic_for: Callable[[str], str],
        outcome: AlarmOutcome,
    ) -> AlarmState:
        """One conditional write of the transition and its messages; on a version conflict,
        re-read and re-apply the same readings."""
        for attempt in range(self.policy.max_write_attempts):
            step = apply_readings(state, chunk, levels, self.policy)
            if step.state == state:
                return state  # nothing changed: nothing to write
            fresh = tuple(
                OwedMessage(
                    topic=topic_for(n.message.groupid),
                    payload=n.message.model_dump(mode="json"),
                    reading_id=n.reading_id,
                    label=n.label,
                    # A failed reminder is not owed: the next one, N minutes on, says the same.
                    required=not (isinstance(n.message, AlarmMessage) and n.message.event == "remind"),
                )
                for n in step.notices
            )
            new_state = step.state.model_copy(update={"owed": (*step.state.owed, *fresh)}) if fresh else step.state
            try:
                return self.store.save(new_state, step.episodes)
            except AlarmConflictError:
                outcome.conflicts += 1
                if attempt + 1 == self.policy.max_write_attempts:
                    raise
                state = self.store.load([key]).states.get(key) or AlarmState(device=key[0], gas=key[1])
        raise AssertionError("unreachable: the loop returns or raises")

    def deliver(self, key: AlarmKey, state: AlarmState, publisher: MessagePublisher, outcome: AlarmOutcome) -> None:
        """Publish a state's outbox in order, then write back what is still owed.

        After the first failure the key's later messages wait too (their order matters). A
        message out of attempts, or a failed reminder, is dropped and counted lost; the others
        stay owed and are counted in `outcome.pending`.
        """
        sent: list[OwedMessage] = []
        kept: list[OwedMessage] = []
        for message in state.owed:
            if kept:
                kept.append(message)
                continue
            try:
                publisher.publish(message.topic, message.payload)
            except PublishError:
                outcome.failed += 1
                kept.append(message.model_copy(update={"attempts": message.attempts + 1}))
                continue
            sent.append(message)
            outcome.published += 1
            if message.reading_id is not None:
                outcome.labels.setdefault(message.reading_id, []).append(message.label)
        owed: list[OwedMessage] = []
        for message in kept:
            if message.required and message.attempts < self.policy.max_publish_attempts:
                owed.append(message)
                continue
            if message.required:
                outcome.lost += 1
                outcome.problems.append(f"{key[0]}/{key[1]}: gave up publishing {message.label!r} to {message.topic}")
        outcome.pending += len(owed)
        self._write_outbox(key, state, sent, owed, outcome)

    def _write_outbox(
        self, key: AlarmKey, state: AlarmState, sent: list[OwedMessage], owed: list[OwedMessage], outcome: AlarmOutcome
    ) -> None:
        """Replace the outbox: drop what was sent, keep `owed`. On a conflict, re-read and drop the
        sent messages from whatever the other writer left. A write that fails leaves the sent
        messages in the outbox: they go out again later (at least once, never zero times)."""
        for attempt in range(self.policy.max_write_attempts):
            try:
                self.store.save(state.model_copy(update={"owed": tuple(owed)}))
                return
            except AlarmConflictError:
                outcome.conflicts += 1
                if attempt + 1 == self.policy.max_write_attempts:
                    break
                try:
                    state = self.store.load([key]).states.get(key) or AlarmState(device=key[0], gas=key[1])
                except AlarmStoreUnavailableError:
                    break
                done = {_identity(m) for m in sent}
                mine = {_identity(m): m for m in owed}
                owed = [mine.get(_identity(m), m) for m in state.owed if _identity(m) not in done]
            except AlarmStoreUnavailableError:
                break
        outcome.problems.append(f"{key[0]}/{key[1]}: the outbox could not be updated; its messages go out again")

    def sweep(self, now: datetime, publisher: MessagePublisher, topic_for: Callable[[str], str]) -> SweepOutcome:
        """The scheduled sweep: close alarms silent for `stale_after` and publish owed messages.

        Reads only the states the store lists as due (an open alarm or an outbox), a bounded set.
        """
        result = SweepOutcome()
        for state in self.store.due_states():
            key = (state.device, state.gas)
            outcome = AlarmOutcome()
            if state.alarm is not None:
                topic = topic_for(state.alarm.groupid)
                step = stale_clear(state, now, self.policy, topic)
                if step.state != state:
                    try:
                        state = self.store.save(step.state, step.episodes)
                        result.closed += 1
                    except (AlarmConflictError, AlarmStoreUnavailableError) as exc:
                        result.problems.append(f"{key[0]}/{key[1]}: stale alarm not closed this time: {exc}")
                        continue
            if state.owed:
                self.deliver(key, state, publisher, outcome)
            result.published += outcome.published
            result.pending += outcome.pending
            result.lost += outcome.lost
            result.problems.extend(outcome.problems)
        return result

    def _over(self, key: AlarmKey, readings: Sequence[Reading], levels: GasLevels | None) -> bool:
        """Whether a reading the alarm state could not take is at or over its warning level: only
        those make the device retry. One below it is left out of the state (stored all the same):
        an open alarm's clear may then come a reading or two later, never earlier."""
        warning = levels.warning if levels is not None else self.policy.warning_levels.get(key[1])
        return warning is not None and any(r.value >= warning for r in readings)

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
                    outcome.pending += 1  # nothing remembers it: the device must retry
                    continue
                outcome.published += 1
                outcome.labels.setdefault(reading.reading_id, []).append(message.warning)


class SweepOutcome(GasmonModel):
    """What one stale sweep did."""

    closed: int = 0  # alarms closed as stale
    published: int = 0  # owed messages published (stale clears included)
    pending: int = 0  # still owed after this sweep
    lost: int = 0
    problems: list[str] = Field(default_factory=list)


def _identity(message: OwedMessage) -> tuple[str, str]:
    return message.topic, json.dumps(message.payload, sort_keys=True, default=str)
