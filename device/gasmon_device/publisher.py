"""The store-and-forward publisher: what the seed's `pub.py` does, without losing readings.

Two loops share the on-disk queue: the sampler reads the sensors every `interval` seconds and
commits each reading document to the queue; the forwarder sends the oldest queued documents in
batches and deletes only those the server acknowledged (accepted or duplicate). Failures back off
with full jitter; documents the server refuses as invalid go to the dead letters with its reason.

Both loops are built from one-step methods (`Sampler.sample_once`, `Forwarder.send_once`) so that
tests can drive them with a fake clock; `run_publisher` runs them on threads for real.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from .backoff import Backoff
from .clock import Clock, SystemClock
from .config import DeviceConfig, SensorSpec, TimeFormat
from .payload import build_document, encode_document, format_createdtime
from .queue import DiskQueue, QueuedDocument, QueueHealth
from .sender import Sender, SendResult
from .sources import SensorSource

logger = logging.getLogger(__name__)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# Deciding what an answer means for the queue (pure)


@dataclass(frozen=True)
class SendPlan:
    """What to do with a sent batch after the server answered."""

    acknowledge: tuple[int, ...] = ()
    duplicates: int = 0
    dead: dict[int, str] = field(default_factory=dict)
    keep: tuple[int, ...] = ()
    retry: bool = False  # back off before the next attempt
    shrink_to: int | None = None  # send smaller batches next (413/400 on a batch)


def plan_outcome(batch: Sequence[QueuedDocument], result: SendResult) -> SendPlan:
    """Decide, per queued document, from the server's answer: delete, set aside, or keep for a retry.

    Only `accepted` and `duplicate` delete; only a refusal of the data itself (per-item
    `rejected`, 422, or 413/400 for a document sent alone) sets aside; everything else keeps the
    document and retries later.
    """
    ids = [doc.id for doc in batch]
    if result.kind == "delivered":
        acknowledge, dead, keep, duplicates = [], {}, [], 0
        for doc_id, item in zip(ids, result.items, strict=True):
            if item.status in ("accepted", "duplicate"):
                acknowledge.append(doc_id)
                duplicates += item.status == "duplicate"
            elif item.status == "rejected":
                dead[doc_id] = f"HTTP {result.status}: {item.reason}"
            else:
                keep.append(doc_id)
        return SendPlan(tuple(acknowledge), duplicates, dead, tuple(keep), retry=bool(keep))
    if result.kind == "invalid":
        return SendPlan(
            dead={
                doc_id: f"HTTP {result.status}: {result.reasons.get(index) or result.reason}"
                for index, doc_id in enumerate(ids)
            }
        )
    if result.kind in ("too_large", "malformed"):
        if len(ids) == 1:
            what = "too large" if result.kind == "too_large" else "malformed"
            return SendPlan(
                dead={ids[0]: f"HTTP {result.status}: the server found the document {what}: {result.reason}"}
            )
        return SendPlan(keep=tuple(ids), shrink_to=max(1, len(ids) // 2))
    return SendPlan(keep=tuple(ids), retry=True)


# ---------------------------------------------------------------------------------------------
# Forwarder: queue -> API


@dataclass(frozen=True)
class SendReport:
    """What one `send_once` did, for logs and tests."""

    sent: int = 0
    acknowledged: int = 0
    duplicates: int = 0
    dead: int = 0
    kept: int = 0
    retry_in: float | None = None  # seconds until the next attempt is allowed (None: go on)
    result: SendResult | None = None


class Forwarder:
    """Sends queued documents in batches; owns the retry schedule."""

    def __init__(
        self,
        queue: DiskQueue,
        sender: Sender,
        *,
        backoff: Backoff,
        clock: Clock,
        batch_size: int = 100,
        max_batch_bytes: int = 900_000,
    ) -> None:
        self.queue = queue
        self.sender = sender
        self.backoff = backoff
        self.clock = clock
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self._limit = batch_size
        self._failures = 0
        self._next_attempt_at = float("-inf")
        self.requests = 0

    @property
    def failures(self) -> int:
        """Failed attempts in a row (0 after any answer that moved the queue forward)."""
        return self._failures

    def wait_seconds(self) -> float:
        """Seconds until a send is allowed (0 when one is allowed now)."""
        return max(0.0, self._next_attempt_at - self.clock.monotonic())

    def send_once(self) -> SendReport:
        """Send the oldest batch if a send is due and the queue is not empty."""
        wait = self.wait_seconds()
        if wait > 0:
            return SendReport(retry_in=wait)
        batch = self.queue.peek(self._limit, self.max_batch_bytes)
        if not batch:
            return SendReport()
        now_ms = _ms(self.clock.now())
        self.queue.mark_attempt([doc.id for doc in batch], now_ms)
        self.requests += 1
        result = self.sender.send([doc.body for doc in batch])
        plan = plan_outcome(batch, result)
        now_ms = _ms(self.clock.now())

        if plan.acknowledge:
            self.queue.acknowledge(plan.acknowledge, plan.duplicates, now_ms)
        if plan.dead:
            self.queue.dead_letter(plan.dead, result.status, now_ms)
        if plan.shrink_to is not None:
            self._limit = plan.shrink_to
            logger.warning(
                "the API refused a batch of %d (%s); retrying in batches of %d", len(batch), result.reason, self._limit
            )
            return SendReport(sent=len(batch), kept=len(plan.keep), result=result)

        retry_in: float | None = None
        if plan.retry:
            retry_in = self._fail(result, len(batch), now_ms)
        else:
            recovered = self._failures
            self._failures = 0
            self._next_attempt_at = float("-inf")
            self._limit = min(self.batch_size, self._limit * 2)  # after a 413 split, grow back gradually
            if plan.acknowledge:
                # Routine single-reading sends stay out of the journal; catching up is news.
                log = logger.info if recovered or len(plan.acknowledge) > 1 else logger.debug
                log(
                    "delivered %d reading document(s) (%d already stored)%s, %d still queued",
                    len(plan.acknowledge),
                    plan.duplicates,
                    f" after {recovered} failed attempt(s)" if recovered else "",
                    self.queue.depth(),
                )
        return SendReport(
            sent=len(batch),
            acknowledged=len(plan.acknowledge),
            duplicates=plan.duplicates,
            dead=len(plan.dead),
            kept=len(plan.keep),
            retry_in=retry_in,
            result=result,
        )

    def _fail(self, result: SendResult, batch_size: int, now_ms: int) -> float:
        delay = self.backoff.delay(self._failures, result.retry_after)
        self._failures += 1
        self._next_attempt_at = self.clock.monotonic() + delay
        in_a_row = self.queue.record_failure(result.reason, now_ms)
        log = logger.error if result.config_problem else logger.warning
        log(
            "sending %d document(s) failed (%s); attempt %d in a row, next try in %.1f s%s",
            batch_size,
            result.reason,
            in_a_row,
            delay,
            f" (server asked for {result.retry_after:.0f} s)" if result.retry_after is not None else "",
        )
        return delay

    def drain(self, stop: threading.Event | None = None, max_batches: int | None = None) -> int:
        """Send batches back to back until the queue is empty, a retry is due later, or `stop` is set."""
        batches = 0
        while (stop is None or not stop.is_set()) and (max_batches is None or batches < max_batches):
            report = self.send_once()
            if report.sent == 0 or report.retry_in is not None:
                break
            batches += 1
        return batches


# ---------------------------------------------------------------------------------------------
# Sampler: sensors -> queue


class Sampler:
    """Reads the source and commits one reading document per sample to the queue."""

    def __init__(
        self,
        source: SensorSource,
        queue: DiskQueue,
        *,
        clock: Clock,
        groupid: str,
        gps: str,
        sensors: Sequence[SensorSpec],
        zone: ZoneInfo | None = None,
        time_format: TimeFormat = "iso",
        subsecond: bool = False,
        deviceid: str = "",
    ) -> None:
        self.source = source
        self.deviceid = deviceid
        self.queue = queue
        self.clock = clock
        self.groupid = groupid
        self.gps = gps
        self.sensors = tuple(sensors)
        self.zone = zone or ZoneInfo("Asia/Seoul")
        self.time_format = time_format
        self.subsecond = subsecond
        self.exhausted = False
        self.taken = 0

    def sample_once(self) -> bool:
        """Take one sample and queue it; False once the source has nothing more (a finished replay)."""
        now = self.clock.now()
        sample = self.source.read(now)
        if sample is None:
            if not self.exhausted:
                logger.info("the sensor source has no more readings")
            self.exhausted = True
            return False
        createdtime = format_createdtime(sample.taken_at or now, self.zone, self.time_format, self.subsecond)
        document = build_document(
            groupid=self.groupid,
            gps=self.gps,
            sensors=self.sensors,
            values=sample.values,
            createdtime=createdtime,
            deviceid=self.deviceid,
        )
        if document is None:
            logger.warning("no sensor gave a value at %s; nothing queued", createdtime)
            return True
        self.queue.put(encode_document(document), _ms(now))
        self.taken += 1
        return True


# ---------------------------------------------------------------------------------------------
# Running for real


def build_sampler(config: DeviceConfig, source: SensorSource, queue: DiskQueue, clock: Clock) -> Sampler:
    """The sampler the config describes."""
    return Sampler(
        source,
        queue,
        clock=clock,
        groupid=config.groupid,
        gps=config.gps,
        sensors=config.sensors,
        zone=config.zone,
        time_format=config.time_format,
        subsecond=config.interval_seconds < 1,
        deviceid=config.thing_name,
    )


def build_forwarder(config: DeviceConfig, queue: DiskQueue, sender: Sender, clock: Clock) -> Forwarder:
    """The forwarder the config describes."""
    return Forwarder(
        queue,
        sender,
        backoff=Backoff(
            base=config.backoff.base_seconds,
            cap=config.backoff.cap_seconds,
            max_retry_after=config.backoff.max_retry_after_seconds,
        ),
        clock=clock,
        batch_size=config.api.batch_size,
        max_batch_bytes=config.api.max_batch_bytes,
    )


def sample_loop(
    sampler: Sampler,
    interval: float,
    stop: threading.Event,
    wake: threading.Event | None = None,
    max_samples: int | None = None,
) -> None:
    """Sample every `interval` seconds on the monotonic clock until stopped or the source ends.

    A late tick (the Pi was busy or suspended) is taken once, not replayed, so a stall never
    produces a burst of readings stamped with the same time.
    """
    clock = sampler.clock
    next_at = clock.monotonic()
    while not stop.is_set():
        try:
            more = sampler.sample_once()
        except Exception:  # a sensor glitch must not end the service; the next tick tries again
            logger.exception("reading the sensors failed")
            more = True
        if wake is not None:
            wake.set()
        if not more or (max_samples is not None and sampler.taken >= max_samples):
            return
        next_at += interval
        now = clock.monotonic()
        if next_at < now:
            next_at = now + interval - ((now - next_at) % interval)
        stop.wait(next_at - now)


def forward_loop(
    forwarder: Forwarder,
    stop: threading.Event,
    wake: threading.Event,
    idle_poll: float = 1.0,
    until_empty: threading.Event | None = None,
) -> None:
    """Send whenever there is something queued and no backoff is pending, until `stop` is set.

    If `until_empty` is set, return once the queue is empty (`--drain`, and after a finite replay).
    """
    while not stop.is_set():
        wake.clear()  # before looking at the queue, so a reading queued meanwhile is not missed
        try:
            report = forwarder.send_once()
        except Exception:  # never let one bad answer kill the forwarder; the queue keeps the data
            logger.exception("sending failed unexpectedly")
            report = SendReport(retry_in=forwarder.backoff.delay(forwarder.failures))
        if report.sent and report.retry_in is None:
            continue  # more may be queued: keep draining
        if until_empty is not None and until_empty.is_set() and forwarder.queue.depth() == 0:
            return
        if report.retry_in is None:
            wake.wait(idle_poll)  # a new reading wakes us at once
        else:
            stop.wait(report.retry_in)


# ---------------------------------------------------------------------------------------------
# The periodic status line: a healthy publisher says so in its journal


def _since(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "never"
    seconds = max(0, now_ms - ms) // 1000
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def status_line(health: QueueHealth, now_ms: int, delivered_before: int = 0) -> str:
    """One line for the journal: delivered since start, queued, last success, and the failure streak.

    `delivered_before` is the queue's delivered count when the publisher started, so the figure is
    this run's; the queue's lifetime totals stay in `gasmon-device status`.
    """
    line = (
        f"status: {health.delivered - delivered_before} delivered since start, {health.depth} queued, "
        f"last success {_since(health.last_success_ms, now_ms)}"
    )
    if health.dead_letters:
        line += f", {health.dead_letters} dead letter(s)"
    if health.dropped:
        line += f", {health.dropped} dropped (queue full)"
    if health.consecutive_failures:
        line += f"; failing {health.consecutive_failures} attempt(s) in a row: {health.last_error}"
    return line


def status_loop(queue: DiskQueue, every: float, stop: threading.Event, clock: Clock) -> None:
    """Log `status_line` at INFO every `every` seconds until `stop` is set (WARNING while failing)."""
    delivered_before = queue.health().delivered
    while not stop.wait(every):
        try:
            health = queue.health()
        except Exception:  # the status line must never take the publisher down
            logger.exception("reading the queue's health failed")
            continue
        log = logger.warning if health.consecutive_failures else logger.info
        log("%s", status_line(health, _ms(clock.now()), delivered_before))


def run_publisher(
    config: DeviceConfig,
    source: SensorSource | None,
    queue: DiskQueue,
    sender: Sender,
    stop: threading.Event,
    *,
    clock: Clock | None = None,
    max_samples: int | None = None,
    status_every: float | None = 60.0,
) -> None:
    """Run sampler and forwarder until `stop` is set.

    `source` None drains the queue and returns (`gasmon-device publish --drain`). With a finite
    source (a CSV replay without looping) or `max_samples`, return once everything is delivered.
    `status_every` seconds a status line is logged (`status_line`); None or 0: never.
    """
    clock = clock or SystemClock()
    forwarder = build_forwarder(config, queue, sender, clock)
    wake = threading.Event()
    done_sampling = threading.Event()
    quit_status = threading.Event()
    if status_every:
        threading.Thread(
            target=status_loop, args=(queue, status_every, quit_status, clock), name="gasmon-status", daemon=True
        ).start()
    try:
        _run(config, source, forwarder, stop, wake, done_sampling, clock, max_samples)
    finally:
        quit_status.set()


def _run(
    config: DeviceConfig,
    source: SensorSource | None,
    forwarder: Forwarder,
    stop: threading.Event,
    wake: threading.Event,
    done_sampling: threading.Event,
    clock: Clock,
    max_samples: int | None,
) -> None:
    if source is None:
        done_sampling.set()
        forward_loop(forwarder, stop, wake, until_empty=done_sampling)
        return

    sampler = build_sampler(config, source, forwarder.queue, clock)

    def sampling() -> None:
        try:
            sample_loop(sampler, config.interval_seconds, stop, wake, max_samples)
        finally:
            done_sampling.set()
            wake.set()

    thread = threading.Thread(target=sampling, name="gasmon-sampler", daemon=True)
    thread.start()
    try:
        forward_loop(forwarder, stop, wake, until_empty=done_sampling)
    finally:
        stop.set()
        thread.join(timeout=5)
