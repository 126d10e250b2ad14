"""What the operator reads: the disconnect alert and the "reconnected" email."""

from datetime import timedelta

import pytest
from presence_fakes import at, lifecycle

from gasmon.presence import (
    PresencePolicy,
    apply_event,
    claimed,
    format_disconnect_alert,
    format_duration,
    format_reconnect_notice,
)
from gasmon.presence_models import DeviceInfo, Email, PresenceState

POLICY = PresencePolicy()
DEVICE = DeviceInfo(groupid="2", gps="37.61002501514269, 126.99636868892937", last_reading_at=at(-30))


def lost_state(reason_file: str = "presence_disconnected_lost.json") -> PresenceState:
    state = apply_event(None, lifecycle("presence_connected.json")).state
    return apply_event(state, lifecycle(reason_file)).state


def alert(state: PresenceState | None = None, device: DeviceInfo | None = DEVICE, **policy: object) -> Email:
    return format_disconnect_alert(state or lost_state(), device, PresencePolicy.model_validate(policy))


def test_alert_subject_names_the_device_and_what_happened() -> None:
    assert alert().subject == "[gasmon] RPI disconnected: connection lost"


def test_alert_gives_the_time_in_seoul_and_in_utc() -> None:
    # Given a connection lost at 09:00 UTC
    # When the alert is written with the default time zone
    body = alert().body
    # Then it shows 18:00 KST and 09:00 UTC
    assert "2025-03-14 18:00:00 KST (Asia/Seoul)" in body
    assert "2025-03-14 09:00:00 UTC" in body


def test_alert_uses_the_configured_time_zone() -> None:
    body = alert(local_timezone="Europe/Berlin").body
    assert "2025-03-14 10:00:00 CET (Europe/Berlin)" in body


def test_alert_explains_the_reason_in_plain_words() -> None:
    body = alert(lost_state("presence_keepalive_timeout.json")).body
    assert "Nothing was heard from the device for 1.5 times its keep-alive interval" in body
    assert "without closing the connection (MQTT_KEEP_ALIVE_TIMEOUT)." in body


def test_unknown_reason_is_shown_as_aws_named_it() -> None:
    state = lost_state().model_copy(update={"disconnect_reason": "SOMETHING_NEW"})
    assert "AWS IoT gave the reason SOMETHING_NEW, which gasmon has no description for." in alert(state).body


def test_alert_says_how_long_the_device_had_been_connected() -> None:
    # Given a session that started at 06:47 UTC and dropped at 09:00 UTC
    # Then the alert says 2 h 13 min, since 15:47 local time
    assert "2 h 13 min (since 2025-03-14 15:47:00 KST (Asia/Seoul))" in alert().body


def test_alert_says_uptime_is_unknown_when_the_session_start_was_never_seen() -> None:
    state = apply_event(None, lifecycle("presence_disconnected_lost.json")).state
    assert "not known (gasmon did not see this session start)" in alert(state).body


def test_alert_carries_client_id_thing_name_and_session_id() -> None:
    body = alert().body
    assert "Thing name:" in body and "Client id:" in body
    assert "a4666d2a7d844ae4ac5d7b38c9cb7967" in body


def test_alert_gives_group_and_location_when_gasmon_has_readings() -> None:
    body = alert().body
    assert "Group:          2" in body
    assert "37.61002501514269, 126.99636868892937" in body


def test_alert_says_group_is_unknown_without_readings() -> None:
    assert "not known (gasmon has no readings from this device)" in alert(device=None).body


def test_alert_mentions_the_grace_period() -> None:
    assert "has not reconnected within 1 min." in alert().body
    assert "within 90 s." not in alert(grace=timedelta(seconds=90)).body
    assert "within 1 min 30 s." in alert(grace=timedelta(seconds=90)).body


def test_subject_stays_within_what_sns_accepts() -> None:
    # Given a device with a long, non-ASCII name
    state = lost_state().model_copy(update={"thing_name": "가스센서-" + "x" * 120})
    # When the alert is written
    subject = alert(state).subject
    # Then the subject is printable ASCII and under 100 characters
    assert len(subject) < 100
    assert subject.isascii() and subject.isprintable()


def test_reconnect_email_says_how_long_the_device_was_away() -> None:
    # Given a device alerted at 09:01 that reconnects at 09:07:12
    state = claimed(lost_state(), "alert", lost_state().episode_id or "", "m1", at(61))
    state = apply_event(state, lifecycle("presence_reconnected.json")).state
    # When the reconnect email is written
    email = format_reconnect_notice(state, DEVICE, POLICY)
    # Then subject and body say it was away 7 minutes, with both times
    assert email.subject == "[gasmon] RPI reconnected after 7 min"
    assert "Offline for:         7 min 12 s" in email.body
    assert "2025-03-14 18:07:12 KST (Asia/Seoul)" in email.body
    assert "2025-03-14 09:07:12 UTC" in email.body
    assert "5b3c1e0f9a2d4c7e8f6a1b2c3d4e5f60" in email.body


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45 s"), (60, "1 min"), (425, "7 min 5 s"), (7980, "2 h 13 min"), (3 * 86400 + 4 * 3600, "3 d 4 h")],
)
def test_durations_read_naturally(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
