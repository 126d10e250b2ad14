"""The presence use cases with in-memory ports: what gets scheduled and which emails go out."""

import pytest
from presence_fakes import FakePorts, at, lifecycle

from gasmon.errors import NotifyError
from gasmon.presence import PresencePolicy, record_lifecycle_event, run_presence_check
from gasmon.presence_models import CheckRequest, DeviceInfo, LifecycleEvent

POLICY = PresencePolicy()


def record(fake: FakePorts, event: LifecycleEvent, now_seconds: float = 0.2, token: str = "req") -> str:
    return record_lifecycle_event(event, POLICY, at(now_seconds), token, fake.ports()).outcome


def check(fake: FakePorts, request: CheckRequest, now_seconds: float, token: str = "msg-1") -> str:
    return run_presence_check(request, POLICY, at(now_seconds), token, fake.ports()).outcome


def connected_then_lost(fake: FakePorts) -> CheckRequest:
    record(fake, lifecycle("presence_connected.json"), -8000)
    record(fake, lifecycle("presence_disconnected_lost.json"))
    [request] = fake.scheduler.take()
    return request


# ---- recording -----------------------------------------------------------------------------------


def test_lost_connection_schedules_one_check_after_the_grace() -> None:
    # Given a connected device
    fake = FakePorts()
    record(fake, lifecycle("presence_connected.json"), -8000)
    # When its connection is lost (and the event reaches us 0.2 s later)
    outcome = record(fake, lifecycle("presence_disconnected_lost.json"), 0.2)
    # Then one check is scheduled for the rest of the grace period
    assert outcome == "check_scheduled"
    [(request, delay)] = fake.scheduler.scheduled
    assert (request.client_id, request.reason, delay) == ("RPI", "CONNECTION_LOST", 60)


def test_clean_disconnect_is_recorded_without_a_check() -> None:
    # Given a connected device
    fake = FakePorts()
    record(fake, lifecycle("presence_connected.json"), -8000)
    # When the program is stopped with Ctrl-C
    outcome = record(fake, lifecycle("presence_disconnected_clean.json"))
    # Then the state says disconnected, and nothing is scheduled or sent
    assert outcome == "recorded"
    assert fake.repository.states["RPI"].status == "disconnected"
    assert fake.scheduler.scheduled == [] and fake.notifier.sent == []


def test_disconnect_with_a_reason_that_does_not_alert_schedules_nothing() -> None:
    fake = FakePorts()
    policy = PresencePolicy(alert_reasons=frozenset({"CONNECTION_LOST"}))
    report = record_lifecycle_event(lifecycle("presence_keepalive_timeout.json"), policy, at(45), "req", fake.ports())
    assert (report.outcome, report.disconnect_kind) == ("recorded", "unexpected")
    assert fake.scheduler.scheduled == []


def test_out_of_order_disconnect_is_stale_and_schedules_nothing() -> None:
    # Given a device that already reconnected
    fake = FakePorts()
    record(fake, lifecycle("presence_reconnected.json"), 433)
    # When the older lost-connection event arrives late
    outcome = record(fake, lifecycle("presence_disconnected_lost.json"), 434)
    # Then it is stale: no check, and the device stays connected
    assert outcome == "stale"
    assert fake.scheduler.scheduled == []
    assert fake.repository.states["RPI"].status == "connected"


def test_retried_disconnect_schedules_its_check_again() -> None:
    # Given a disconnect recorded but whose check could not be queued (the invocation failed)
    fake = FakePorts()
    connected_then_lost(fake)
    # When Lambda retries the same event
    outcome = record(fake, lifecycle("presence_disconnected_lost.json"), 60.5)
    # Then the check is scheduled again (a duplicate check is harmless, a missing one is not)
    assert outcome == "check_scheduled"
    assert len(fake.scheduler.scheduled) == 1


# ---- checking ------------------------------------------------------------------------------------


def test_device_still_down_after_the_grace_gets_one_alert() -> None:
    # Given a lost connection whose check comes due
    fake = FakePorts()
    request = connected_then_lost(fake)
    # When the check runs 61 s after the disconnect
    outcome = check(fake, request, 61)
    # Then exactly one alert is sent, and it is about RPI
    assert outcome == "alert_sent"
    [email] = fake.notifier.sent
    assert "RPI disconnected" in email.subject


def test_flapping_within_the_grace_sends_nothing() -> None:
    # Given a device that drops and comes back 5 s later
    fake = FakePorts()
    request = connected_then_lost(fake)
    record(fake, lifecycle("presence_reconnected.json", timestamp=request.disconnected_at_ms + 5000), 5.1)
    # When the check comes due
    outcome = check(fake, request, 61)
    # Then no email is sent
    assert outcome == "skipped"
    assert fake.notifier.sent == []


def test_duplicate_checks_send_one_alert() -> None:
    # Given the same check delivered as two different messages
    fake = FakePorts()
    request = connected_then_lost(fake)
    # When both run
    outcomes = [check(fake, request, 61, "msg-1"), check(fake, request, 61.1, "msg-2")]
    # Then one alert is sent
    assert outcomes == ["alert_sent", "skipped"]
    assert len(fake.notifier.sent) == 1


def test_duplicate_check_leaves_a_fresh_claim_to_its_holder() -> None:
    # Given a check that claimed the alert and is still sending it
    fake = FakePorts()
    request = connected_then_lost(fake)
    fake.repository.claim_notice("alert", "RPI", request.episode_id, "msg-1", at(61), at(61) - POLICY.claim_lease)
    # When a duplicate check runs meanwhile
    outcome = check(fake, request, 62, "msg-2")
    # Then it sends nothing
    assert outcome == "claimed_elsewhere"
    assert fake.notifier.sent == []


def test_check_retried_after_sns_failed_sends_the_alert() -> None:
    # Given SNS failing once
    fake = FakePorts()
    request = connected_then_lost(fake)
    fake.notifier.failures_left = 1
    # When the check runs, fails, and SQS delivers the same message again
    with pytest.raises(NotifyError):
        check(fake, request, 61, "msg-1")
    outcome = check(fake, request, 91, "msg-1")
    # Then the alert goes out once
    assert outcome == "alert_sent"
    assert len(fake.notifier.sent) == 1


def test_claim_left_by_a_crashed_check_is_taken_over_after_the_lease() -> None:
    # Given a check that claimed the alert and then died
    fake = FakePorts()
    request = connected_then_lost(fake)
    fake.repository.claim_notice("alert", "RPI", request.episode_id, "dead", at(61), at(61) - POLICY.claim_lease)
    # When another delivery runs after the claim's lease ran out
    outcome = check(fake, request, 61 + POLICY.claim_lease.total_seconds() + 1, "msg-2")
    # Then it sends the alert
    assert outcome == "alert_sent"


def test_early_check_is_put_back_for_the_rest_of_the_grace() -> None:
    # Given a check delivered 20 s after the disconnect
    fake = FakePorts()
    request = connected_then_lost(fake)
    # When it runs
    outcome = check(fake, request, 20)
    # Then it is rescheduled for the remaining 40 s and nothing is sent
    assert outcome == "rescheduled"
    assert [delay for _, delay in fake.scheduler.scheduled] == [40]
    assert fake.notifier.sent == []


def test_alert_includes_group_from_the_device_directory() -> None:
    fake = FakePorts()
    fake.directory.info = DeviceInfo(groupid="2", gps="37.61, 126.99")
    request = connected_then_lost(fake)
    check(fake, request, 61)
    assert "37.61, 126.99" in fake.notifier.sent[0].body


def test_alert_that_could_not_be_marked_sent_is_reported_not_raised() -> None:
    # Given the store failing right after the alert went out
    fake = FakePorts()
    request = connected_then_lost(fake)
    fake.repository.fail_marks = True
    # When the check runs
    report = run_presence_check(request, POLICY, at(61), "msg-1", fake.ports())
    # Then the alert counts as sent and the failure is reported for the log
    assert (report.outcome, report.mark_failed) == ("alert_sent", True)


# ---- reconnecting --------------------------------------------------------------------------------


def test_reconnect_after_an_alert_sends_one_reconnected_email() -> None:
    # Given a device that was alerted about
    fake = FakePorts()
    request = connected_then_lost(fake)
    check(fake, request, 61)
    # When it reconnects, and the connect event is delivered twice
    first = record(fake, lifecycle("presence_reconnected.json"), 433, "req-a")
    second = record(fake, lifecycle("presence_reconnected.json"), 434, "req-b")
    # Then one "reconnected after 7 min" email follows the alert
    assert (first, second) == ("reconnect_notice_sent", "recorded")
    assert [e.subject for e in fake.notifier.sent] == [
        "[gasmon] RPI disconnected: connection lost",
        "[gasmon] RPI reconnected after 7 min",
    ]


def test_reconnect_without_an_alert_sends_nothing() -> None:
    fake = FakePorts()
    connected_then_lost(fake)
    assert record(fake, lifecycle("presence_reconnected.json"), 433) == "recorded"
    assert fake.notifier.sent == []


def test_reconnect_notice_retried_after_sns_failed_is_sent_once() -> None:
    # Given an alerted device whose reconnect email fails the first time
    fake = FakePorts()
    request = connected_then_lost(fake)
    check(fake, request, 61)
    fake.notifier.failures_left = 1
    with pytest.raises(NotifyError):
        record(fake, lifecycle("presence_reconnected.json"), 433, "req-a")
    # When Lambda retries the invocation (same request id)
    outcome = record(fake, lifecycle("presence_reconnected.json"), 493, "req-a")
    # Then the reconnect email goes out once
    assert outcome == "reconnect_notice_sent"
    assert len(fake.notifier.sent) == 2
