"""Presence monitoring: lifecycle events in, one readable, flap-safe email per real outage out.

The rules, in the order a device meets them:

1. Every connect/disconnect lifecycle event is applied to the device's state only if it is newer
   than the one stored: newer `timestamp`, then higher `versionNumber`, then a disconnect beats
   a connect of the same instant (`order_key`). Duplicates and late events never move state back.
2. A disconnect is *clean* when either `clientInitiatedDisconnect` is true or the reason is
   CLIENT_INITIATED_DISCONNECT (AWS has been seen to set only one of them); clean disconnects are
   recorded and send no mail. Any other disconnect is *unexpected*; it *alerts* when its reason
   is one of the policy's alert reasons (`*`, the default, means every unexpected reason).
3. An alerting disconnect opens an *episode* (identified by that event's `order_key`) and
   schedules a check after the grace period. The check emails only if the device is still
   disconnected in the same episode and no alert for that episode was claimed.
4. When a device whose episode was alerted connects again, one "reconnected after N min" email
   follows.

Sending is guarded by claims in the presence table: a claim names the episode and a token (the
SQS message id, the Lambda request id). A retry with the same token, or anyone after the claim
has gone stale without being marked sent, may claim again; nobody may claim what was sent.

Pure apart from the ports the use cases are handed: no AWS SDK, no environment, no logging.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, ValidationError

from gasmon.errors import MalformedEventError, PresenceStoreError
from gasmon.models import ANY_REASON, MAX_CHECK_DELAY_SECONDS, GasmonModel, Problem
from gasmon.ports import CheckScheduler, DeviceDirectory, Notifier, PresenceRepository
from gasmon.presence_models import (
    CheckRequest,
    DeviceInfo,
    Email,
    LifecycleEvent,
    NoticeClaim,
    NoticeKind,
    PresenceState,
    RecordOutcome,
)

CLIENT_INITIATED_DISCONNECT = "CLIENT_INITIATED_DISCONNECT"
UNKNOWN_REASON = "UNKNOWN"
SUBJECT_PREFIX = "[gasmon]"

# disconnectReason -> (short label for the subject, plain words for the body). From the AWS IoT
# lifecycle-events documentation; an unknown reason is shown as AWS named it.
REASONS: dict[str, tuple[str, str]] = {
    "CONNECTION_LOST": (
        "connection lost",
        "The network connection dropped, for example because Wi-Fi, mobile data or power was lost",
    ),
    "MQTT_KEEP_ALIVE_TIMEOUT": (
        "stopped responding",
        "Nothing was heard from the device for 1.5 times its keep-alive interval: it may have frozen,"
        " lost power or lost its network without closing the connection",
    ),
    "SERVER_ERROR": ("AWS IoT server error", "AWS IoT closed the connection after an unexpected server problem"),
    "SERVER_INITIATED_DISCONNECT": (
        "closed by AWS IoT",
        "AWS IoT closed the connection on purpose, for operational reasons",
    ),
    "CLIENT_ERROR": (
        "client error",
        "The device broke the MQTT rules, for example by sending a second CONNECT on one connection"
        " or a message over the size limit",
    ),
    "AUTH_ERROR": (
        "authentication failed",
        "The device failed authentication or authorization; check its certificate and IoT policy",
    ),
    "FORBIDDEN_ACCESS": (
        "access forbidden",
        "The device is not allowed to connect, for example because its IP address is blocked",
    ),
    "THROTTLED": ("throttled", "The device went over an AWS IoT rate limit and was disconnected"),
    "DUPLICATE_CLIENTID": (
        "client id used elsewhere",
        "Another connection used the same client id and replaced this one",
    ),
    "API_INITIATED_DISCONNECT": (
        "closed by API",
        "Someone closed the connection with the AWS IoT DeleteConnection API",
    ),
    "WEBSOCKET_TTL_EXPIRATION": ("WebSocket expired", "The WebSocket connection reached its maximum lifetime"),
    "CUSTOMAUTH_TTL_EXPIRATION": ("authorizer session expired", "The custom authorizer's session lifetime ran out"),
    CLIENT_INITIATED_DISCONNECT: ("closed by the device", "The device closed the connection itself"),
    UNKNOWN_REASON: ("reason unknown", "AWS IoT did not say why the connection ended"),
}

DisconnectKind = Literal["clean", "unexpected", "alerting"]


class PresencePolicy(GasmonModel):
    """The rules one deployment applies (built from settings)."""

    model_config = ConfigDict(frozen=True)

    grace: timedelta = timedelta(seconds=60)
    alert_reasons: frozenset[str] = frozenset({ANY_REASON})
    local_timezone: str = "Asia/Seoul"
    # Longer than a function's timeout: a claim older than this was left by a crashed sender.
    claim_lease: timedelta = timedelta(minutes=2)
    # Clock skew between AWS IoT's timestamps and the Lambda clock that still counts as "due".
    early_tolerance: timedelta = timedelta(seconds=2)

    def alerts_on(self, reason: str | None) -> bool:
        """Whether an unexpected disconnect with this reason should alert."""
        return ANY_REASON in self.alert_reasons or (reason or UNKNOWN_REASON) in self.alert_reasons


@dataclass(frozen=True)
class PresencePorts:
    """The outside systems the presence use cases talk to."""

    repository: PresenceRepository
    scheduler: CheckScheduler
    notifier: Notifier
    directory: DeviceDirectory

    @classmethod
    def merged(
        cls,
        default: Callable[[], PresencePorts],
        repository: PresenceRepository | None = None,
        scheduler: CheckScheduler | None = None,
        notifier: Notifier | None = None,
        directory: DeviceDirectory | None = None,
    ) -> PresencePorts:
        """The ports given (tests hand in fakes), the others from `default()`, called only if needed."""
        if repository and scheduler and notifier and directory:
            return cls(repository, scheduler, notifier, directory)
        fallback = default()
        return cls(
            repository=repository or fallback.repository,
            scheduler=scheduler or fallback.scheduler,
            notifier=notifier or fallback.notifier,
            directory=directory or fallback.directory,
        )


# ---- Parsing -------------------------------------------------------------------------------------


def _decode(raw: Any) -> Any:
    if isinstance(raw, bytes | str):
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedEventError(f"not valid JSON: {exc}") from None
    return raw


def _problems(error: ValidationError) -> list[Problem]:
    return [
        Problem(
            path=".".join(str(part) for part in item["loc"]),
            problem="is required" if item["type"] == "missing" else item["msg"].removeprefix("Value error, "),
        )
        for item in error.errors(include_url=False)
    ]


def parse_lifecycle_event(raw: Any) -> LifecycleEvent:
    """Validate what the IoT rule delivered (a JSON object, or its text) into a `LifecycleEvent`.

    Raises `MalformedEventError` naming every bad field; the caller logs and drops it.
    """
    decoded = _decode(raw)
    if not isinstance(decoded, Mapping):
        raise MalformedEventError("a lifecycle event must be a JSON object")
    try:
        return LifecycleEvent.model_validate(decoded)
    except ValidationError as exc:
        raise MalformedEventError("not an AWS IoT connect/disconnect lifecycle event", _problems(exc)) from None


def parse_check_request(body: str) -> CheckRequest:
    """Validate the body of a presence-check queue message; raises `MalformedEventError`."""
    decoded = _decode(body)
    if not isinstance(decoded, Mapping):
        raise MalformedEventError("a presence check must be a JSON object")
    try:
        return CheckRequest.model_validate(decoded)
    except ValidationError as exc:
        raise MalformedEventError("not a presence check", _problems(exc)) from None


# ---- State rules ---------------------------------------------------------------------------------


def order_key(event: LifecycleEvent) -> str:
    """The event's place in its client's history, as text that sorts the same way.

    Newer timestamp wins, then the higher version number, then a disconnect beats a connect of
    the same instant (a session's disconnect follows its connect). Identical events (duplicates)
    have identical keys. Zero-padded so that DynamoDB's string comparison orders it correctly.
    """
    rank = 1 if event.event_type == "disconnected" else 0
    return f"{event.timestamp:016d}.{event.version_number:020d}.{rank}"


def apply_event(state: PresenceState | None, event: LifecycleEvent) -> RecordOutcome:
    """The state after one lifecycle event; the reference the repository adapters implement.

    A newer event replaces the current status and keeps what it does not speak about (the last
    disconnect stays on record after a connect, the session start after a disconnect). An older
    or duplicate event changes nothing, except that a connect arriving after its own session's
    disconnect still records when that session started (so an alert can say how long it was up).
    """
    key = order_key(event)
    if state is None or state.event_order < key:
        return RecordOutcome(applied=True, state=_state_after(state, event, key))
    session = event.session_identifier
    if (
        event.event_type == "connected"
        and session is not None
        and state.session_id == session
        and state.connected_session != session
    ):
        late_start = state.model_copy(update={"connected_at": event.occurred_at, "connected_session": session})
        return RecordOutcome(applied=False, state=late_start)
    return RecordOutcome(applied=False, state=state)


def _state_after(state: PresenceState | None, event: LifecycleEvent, key: str) -> PresenceState:
    common: dict[str, Any] = {
        "client_id": event.client_id,
        "thing_name": event.device_name,
        "status": event.event_type,
        "event_order": key,
        "event_at": event.occurred_at,
        "session_id": event.session_identifier,
    }
    if event.event_type == "connected":
        common |= {
            "ip_address": event.ip_address,
            "connected_at": event.occurred_at,
            "connected_session": event.session_identifier,
        }
    else:
        common |= {
            "disconnected_at": event.occurred_at,
            "disconnect_reason": event.disconnect_reason,
            "client_initiated": event.client_initiated_disconnect,
            "episode_id": key,
        }
    if state is None:
        return PresenceState(**common)
    return state.model_copy(update=common)


def is_current(event: LifecycleEvent, state: PresenceState) -> bool:
    """Whether the state now reflects exactly this event (just applied, or a duplicate of it)."""
    return bool(state.event_order == order_key(event))


def classify_disconnect(client_initiated: bool | None, reason: str | None, policy: PresencePolicy) -> DisconnectKind:
    """Clean (the device meant it), unexpected, or unexpected and alerting under `policy`."""
    if client_initiated is True or reason == CLIENT_INITIATED_DISCONNECT:
        return "clean"
    return "alerting" if policy.alerts_on(reason) else "unexpected"


def can_claim(
    kind: NoticeKind, state: PresenceState | None, episode_id: str, token: str, stale_before: datetime
) -> bool:
    """Whether `token` may claim sending the `kind` email for `episode_id`; the rule the
    repository's conditional write implements.

    An alert needs the device still disconnected in that episode; a reconnect notice needs an
    alert claimed for it. Then: free if nothing was claimed for the episode, never again once
    sent, and while pending only for the same token or after the claim went stale.
    """
    if state is None:
        return False
    if kind == "alert":
        if state.status != "disconnected" or state.episode_id != episode_id:
            return False
        claim = state.alert
    else:
        if state.alert is None or state.alert.episode_id != episode_id:
            return False
        claim = state.reconnect
    if claim is None or claim.episode_id != episode_id:
        return True
    if claim.sent_at is not None:
        return False
    return bool(claim.token == token or claim.claimed_at < stale_before)


def claimed(state: PresenceState, kind: NoticeKind, episode_id: str, token: str, now: datetime) -> PresenceState:
    """The state after a successful claim (for in-memory repositories)."""
    return state.model_copy(update={kind: NoticeClaim(episode_id=episode_id, token=token, claimed_at=now)})


def marked_sent(state: PresenceState, kind: NoticeKind, episode_id: str, token: str, now: datetime) -> PresenceState:
    """The state after the claimed email went out; unchanged if `token` no longer holds the claim."""
    claim: NoticeClaim | None = getattr(state, kind)
    if claim is None or claim.episode_id != episode_id or claim.token != token:
        return state
    return state.model_copy(update={kind: claim.model_copy(update={"sent_at": now})})


# ---- Decisions -----------------------------------------------------------------------------------


def check_for(event: LifecycleEvent, policy: PresencePolicy) -> CheckRequest:
    """The presence check an alerting disconnect schedules, due one grace period after it."""
    return CheckRequest(
        client_id=event.client_id,
        thing_name=event.device_name,
        episode_id=order_key(event),
        disconnected_at_ms=event.timestamp,
        due_at_ms=event.timestamp + ms_from_timedelta(policy.grace),
        reason=event.disconnect_reason,
    )


def ms_from_timedelta(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def delay_seconds(due_at: datetime, now: datetime) -> int:
    """Whole seconds from `now` until `due_at` (rounded up), within what SQS can delay."""
    remaining = (due_at - now).total_seconds()
    return max(0, min(MAX_CHECK_DELAY_SECONDS, math.ceil(remaining)))


class CheckDecision(GasmonModel):
    """What a due presence check should do."""

    model_config = ConfigDict(frozen=True)

    action: Literal["alert", "reschedule", "skip"]
    reason: str
    delay_seconds: int = 0


def decide_check(
    request: CheckRequest, state: PresenceState | None, now: datetime, policy: PresencePolicy
) -> CheckDecision:
    """Alert only if the device is still down in the same episode, the reason still alerts, no
    alert for it went out and the grace period is over (else check again when it is)."""
    if state is None:
        return CheckDecision(action="skip", reason="unknown_device")
    if state.status == "connected":
        return CheckDecision(action="skip", reason="reconnected")
    if state.episode_id != request.episode_id or state.disconnected_at is None:
        return CheckDecision(action="skip", reason="superseded")
    if classify_disconnect(state.client_initiated, state.disconnect_reason, policy) != "alerting":
        return CheckDecision(action="skip", reason="not_alerting")
    if state.alert is not None and state.alert.episode_id == request.episode_id and state.alert.sent_at is not None:
        return CheckDecision(action="skip", reason="already_alerted")
    due_at = state.disconnected_at + policy.grace
    if now + policy.early_tolerance < due_at:
        return CheckDecision(action="reschedule", reason="not_due", delay_seconds=max(1, delay_seconds(due_at, now)))
    return CheckDecision(action="alert", reason="still_disconnected")


def reconnect_notice_due(state: PresenceState) -> str | None:
    """The episode a "reconnected" email is owed for, if the device is back after an alert."""
    if state.status != "connected" or state.alert is None or state.episode_id is None:
        return None
    if state.alert.episode_id != state.episode_id:
        return None  # the alert was about an older episode, already followed by other events
    notice = state.reconnect
    if notice is not None and notice.episode_id == state.episode_id and notice.sent_at is not None:
        return None
    episode: str = state.episode_id
    return episode


# ---- Emails --------------------------------------------------------------------------------------


def reason_label(reason: str | None) -> str:
    return REASONS.get(reason or UNKNOWN_REASON, (reason or UNKNOWN_REASON, ""))[0]


def describe_reason(reason: str | None) -> str:
    """The disconnect reason in plain words, followed by AWS's name for it."""
    name = reason or UNKNOWN_REASON
    if name not in REASONS:
        return f"AWS IoT gave the reason {name}, which gasmon has no description for."
    return f"{REASONS[name][1]} ({name})."


def format_duration(delta: timedelta, seconds: bool = True) -> str:
    """`45 s`, `7 min 5 s`, `2 h 13 min`, `3 d 4 h`: the two largest units that matter."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs and seconds else f"{minutes} min"
    return f"{secs} s"


def local_time(moment: datetime, timezone: str) -> str:
    """`2025-03-14 18:00:00 KST (Asia/Seoul)`."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({timezone})"


def utc_time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _lines(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"  {label + ':':<{width}}{value}" for label, value in rows)


def _device_rows(state: PresenceState, device: DeviceInfo | None, timezone: str) -> list[tuple[str, str]]:
    rows = [("Thing name", state.thing_name), ("Client id", state.client_id)]
    if device is None:
        rows.append(("Group", "not known (gasmon has no readings from this device)"))
        return rows
    rows.append(("Group", device.groupid))
    rows.append(("Location (GPS)", device.gps or "not reported"))
    if device.last_reading_at is not None:
        rows.append(("Last reading", local_time(device.last_reading_at, timezone)))
    return rows


def connected_for(state: PresenceState) -> timedelta | None:
    """How long the session that ended in the last disconnect had been up, if its start is known."""
    start, end = state.connected_at, state.disconnected_at
    if start is None or end is None or start > end:
        return None
    if state.session_id is not None and state.connected_session != state.session_id:
        return None  # the connect of the session that dropped was never seen
    uptime: timedelta = end - start
    return uptime


def format_disconnect_alert(state: PresenceState, device: DeviceInfo | None, policy: PresencePolicy) -> Email:
    """The alert for a device that dropped off unexpectedly and stayed away for the grace period."""
    if state.disconnected_at is None:
        raise ValueError("an alert needs a disconnected state")
    tz = policy.local_timezone
    uptime = connected_for(state)
    up_text = (
        f"{format_duration(uptime)} (since {local_time(state.connected_at, tz)})"
        if uptime is not None and state.connected_at is not None
        else "not known (gasmon did not see this session start)"
    )
    disconnect_rows = [
        ("Local time", local_time(state.disconnected_at, tz)),
        ("UTC", utc_time(state.disconnected_at)),
        ("Reason", describe_reason(state.disconnect_reason)),
        ("Connected for", up_text),
        ("Session id", state.session_id or "not reported"),
    ]
    body = "\n".join(
        [
            f"Device {state.thing_name} went offline unexpectedly and has not reconnected within"
            f" {format_duration(policy.grace)}.",
            "",
            "Device",
            _lines(_device_rows(state, device, tz)),
            "",
            "Disconnect",
            _lines(disconnect_rows),
            "",
            "Check the device's power and network. You will get one more email when it reconnects;",
            "no other email is sent about this disconnect.",
            "",
        ]
    )
    subject = f"{SUBJECT_PREFIX} {state.thing_name} disconnected: {reason_label(state.disconnect_reason)}"
    return Email(subject=subject, body=body)


def format_reconnect_notice(state: PresenceState, device: DeviceInfo | None, policy: PresencePolicy) -> Email:
    """The follow-up for a device that came back after an alert: "reconnected after N min"."""
    if state.disconnected_at is None or state.connected_at is None:
        raise ValueError("a reconnect notice needs both the disconnect and the reconnect time")
    tz = policy.local_timezone
    offline = state.connected_at - state.disconnected_at
    rows = [
        ("Reconnected (local)", local_time(state.connected_at, tz)),
        ("Reconnected (UTC)", utc_time(state.connected_at)),
        ("Offline since", local_time(state.disconnected_at, tz)),
        ("Offline for", format_duration(offline)),
        ("Reason it dropped", describe_reason(state.disconnect_reason)),
        ("New session id", state.connected_session or "not reported"),
    ]
    if state.ip_address:
        rows.append(("IP address", state.ip_address))
    body = "\n".join(
        [
            f"Device {state.thing_name} reconnected after {format_duration(offline, seconds=False)} offline.",
            "",
            "Device",
            _lines(_device_rows(state, device, tz)),
            "",
            "Reconnect",
            _lines(rows),
            "",
        ]
    )
    subject = f"{SUBJECT_PREFIX} {state.thing_name} reconnected after {format_duration(offline, seconds=False)}"
    return Email(subject=subject, body=body)


# ---- Use cases -----------------------------------------------------------------------------------


class RecordReport(GasmonModel):
    """What recording one lifecycle event did (the record function's answer and its metrics)."""

    client_id: str
    event_type: str
    applied: bool
    outcome: Literal["stale", "recorded", "check_scheduled", "reconnect_notice_sent", "reconnect_notice_held"]
    disconnect_kind: DisconnectKind | None = None
    delay_seconds: int | None = None
    mark_failed: bool = False


def record_lifecycle_event(
    event: LifecycleEvent, policy: PresencePolicy, now: datetime, token: str, ports: PresencePorts
) -> RecordReport:
    """Apply one lifecycle event; schedule a check for an alerting disconnect; send the
    "reconnected" email when a device comes back after an alert.

    Work is decided from the state *after* the write, for any event the state now reflects, so a
    retry after a failed SQS or SNS call still schedules or notifies; the claim keeps a retry or
    duplicate from notifying twice. Store, queue and SNS failures propagate (the invocation is
    retried, then lands in the on-failure destination).
    """
    outcome = ports.repository.record(event, now)
    state = outcome.state
    report = RecordReport(
        client_id=event.client_id, event_type=event.event_type, applied=outcome.applied, outcome="recorded"
    )
    if not is_current(event, state):
        return report.model_copy(update={"outcome": "stale"})

    if event.event_type == "disconnected":
        kind = classify_disconnect(event.client_initiated_disconnect, event.disconnect_reason, policy)
        report = report.model_copy(update={"disconnect_kind": kind})
        if kind != "alerting":
            return report
        check = check_for(event, policy)
        delay = delay_seconds(check.due_at, now)
        ports.scheduler.schedule(check, delay)
        return report.model_copy(update={"outcome": "check_scheduled", "delay_seconds": delay})

    episode = reconnect_notice_due(state)
    if episode is None:
        return report
    stale_before = now - policy.claim_lease
    if not ports.repository.claim_notice("reconnect", event.client_id, episode, token, now, stale_before):
        return report.model_copy(update={"outcome": "reconnect_notice_held"})
    device = ports.directory.describe(state.client_id, state.thing_name)
    ports.notifier.send(format_reconnect_notice(state, device, policy))
    mark_failed = _mark_sent(ports.repository, "reconnect", event.client_id, episode, token, now)
    return report.model_copy(update={"outcome": "reconnect_notice_sent", "mark_failed": mark_failed})


class CheckReport(GasmonModel):
    """What one presence check did (the check function's log line and metrics)."""

    client_id: str
    episode_id: str
    outcome: Literal["alert_sent", "skipped", "rescheduled", "claimed_elsewhere"]
    reason: str
    delay_seconds: int | None = None
    mark_failed: bool = False


def run_presence_check(
    request: CheckRequest, policy: PresencePolicy, now: datetime, token: str, ports: PresencePorts
) -> CheckReport:
    """Send the disconnect alert if it is still owed (`decide_check`), at most once per episode.

    `token` identifies this delivery of the check (the SQS message id): a redelivery of the same
    message may take over its own claim; a duplicate message may not, and leaves the alert to the
    claim's holder. SNS and store failures propagate so the message is retried.
    """
    state = ports.repository.get(request.client_id)
    decision = decide_check(request, state, now, policy)
    report = CheckReport(
        client_id=request.client_id, episode_id=request.episode_id, outcome="skipped", reason=decision.reason
    )
    if decision.action == "skip" or state is None:
        return report
    if decision.action == "reschedule":
        ports.scheduler.schedule(request, decision.delay_seconds)
        return report.model_copy(update={"outcome": "rescheduled", "delay_seconds": decision.delay_seconds})

    stale_before = now - policy.claim_lease
    if not ports.repository.claim_notice("alert", request.client_id, request.episode_id, token, now, stale_before):
        return report.model_copy(update={"outcome": "claimed_elsewhere"})
    device = ports.directory.describe(state.client_id, state.thing_name)
    ports.notifier.send(format_disconnect_alert(state, device, policy))
    mark_failed = _mark_sent(ports.repository, "alert", request.client_id, request.episode_id, token, now)
    return report.model_copy(update={"outcome": "alert_sent", "mark_failed": mark_failed})


def _mark_sent(
    repository: PresenceRepository, kind: NoticeKind, client_id: str, episode_id: str, token: str, now: datetime
) -> bool:
    """Mark a sent email; True if that failed. Not raised: the email is out, and a retry would
    send it again once the claim goes stale. The caller logs it."""
    try:
        repository.mark_notice_sent(kind, client_id, episode_id, token, now)
    except PresenceStoreError:
        return True
    return False


# ---- Last Will -----------------------------------------------------------------------------------

LAST_WILL_TOPIC_FILTER = "my/things/+/update"


def shadow_update_topic(topic: str) -> str | None:
    """Where the Last Will rule republishes a message sent on `my/things/<thing>/update`:
    `$aws/things/<thing>/shadow/update` (the rule's `${topic(3)}`); None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "my" and parts[1] == "things" and parts[2] and parts[3] == "update":
        return f"$aws/things/{parts[2]}/shadow/update"
    return None
