"""The pure presence rules: event order, applying events, classifying disconnects, claims and
the decision a due check takes."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_fakes import at, lifecycle, load_event

from gasmon.errors import MalformedEventError
from gasmon.presence import (
    PresencePolicy,
    apply_event,
    can_claim,
    check_for,
    claimed,
    classify_disconnect,
    decide_check,
    delay_seconds,
    marked_sent,
    order_key,
    parse_check_request,
    parse_lifecycle_event,
    reconnect_notice_due,
    shadow_update_topic,
)
from gasmon.presence_models import CheckRequest, LastWillMessage, LifecycleEvent, PresenceState

POLICY = PresencePolicy()


def state_after(*events: LifecycleEvent) -> PresenceState:
    state = None
    for event in events:
        state = apply_event(state, event).state
    assert state is not None
    return state


# ---- parsing -------------------------------------------------------------------------------------


def test_aws_lifecycle_event_parses_with_aws_field_names() -> None:
    # Given the lost-connection event as AWS IoT publishes it
    # When it is parsed
    event = lifecycle("presence_disconnected_lost.json")
    # Then every field the rules need is there
    assert (event.client_id, event.event_type, event.disconnect_reason) == ("RPI", "disconnected", "CONNECTION_LOST")
    assert event.client_initiated_disconnect is False
    assert event.occurred_at == at(0)


def test_event_without_client_id_is_malformed_and_names_the_field() -> None:
    # Given a lifecycle event with no clientId
    raw = {"timestamp": 1, "eventType": "connected"}
    # When it is parsed
    with pytest.raises(MalformedEventError) as error:
        parse_lifecycle_event(raw)
    # Then the error names the missing field
    assert [p.path for p in error.value.details] == ["clientId"]


@pytest.mark.parametrize("raw", [[], "not json", {"clientId": "RPI", "timestamp": 1, "eventType": "subscribed"}])
def test_anything_but_a_connect_or_disconnect_event_is_malformed(raw: object) -> None:
    # Given something that is not a connect/disconnect event
    # When it is parsed
    # Then it is refused as malformed (the handler drops it)
    with pytest.raises(MalformedEventError):
        parse_lifecycle_event(raw)


def test_lower_case_reason_from_a_local_broker_is_normalised() -> None:
    # Given a disconnect whose reason is not upper case
    event = lifecycle("presence_disconnected_lost.json", disconnectReason="connection_lost")
    # Then it is read as AWS's name
    assert event.disconnect_reason == "CONNECTION_LOST"


def test_check_message_body_parses_and_rejects_garbage() -> None:
    # Given the body the record function puts on the queue, and a broken one
    check = check_for(lifecycle("presence_disconnected_lost.json"), POLICY)
    # When both are parsed
    # Then the first round-trips and the second is malformed
    assert parse_check_request(check.model_dump_json()) == check
    with pytest.raises(MalformedEventError):
        parse_check_request('{"client_id": "RPI"}')


# ---- order and state -----------------------------------------------------------------------------


def test_newer_timestamp_orders_after_older() -> None:
    connected = lifecycle("presence_connected.json")
    lost = lifecycle("presence_disconnected_lost.json")
    assert order_key(connected) < order_key(lost)


def test_same_timestamp_orders_by_version_number() -> None:
    older = lifecycle("presence_connected.json", versionNumber=9)
    newer = lifecycle("presence_connected.json", versionNumber=10)
    assert order_key(older) < order_key(newer)


def test_disconnect_orders_after_connect_of_the_same_instant_and_version() -> None:
    connected = lifecycle("presence_connected.json")
    lost = lifecycle("presence_disconnected_lost.json", timestamp=connected.timestamp)
    assert order_key(connected) < order_key(lost)


def test_newer_event_is_applied() -> None:
    # Given a connected device
    state = state_after(lifecycle("presence_connected.json"))
    # When its connection is lost
    outcome = apply_event(state, lifecycle("presence_disconnected_lost.json"))
    # Then it is disconnected, in an episode named after that event
    assert outcome.applied
    assert outcome.state.status == "disconnected"
    assert outcome.state.episode_id == order_key(lifecycle("presence_disconnected_lost.json"))


def test_duplicate_event_changes_nothing() -> None:
    # Given a device whose disconnect was recorded
    state = state_after(lifecycle("presence_connected.json"), lifecycle("presence_disconnected_lost.json"))
    # When the same disconnect arrives again
    outcome = apply_event(state, lifecycle("presence_disconnected_lost.json"))
    # Then nothing moves
    assert not outcome.applied
    assert outcome.state == state


def test_older_event_never_moves_state_backwards() -> None:
    # Given a device that reconnected after a loss
    state = state_after(lifecycle("presence_disconnected_lost.json"), lifecycle("presence_reconnected.json"))
    # When the old disconnect is delivered late
    outcome = apply_event(state, lifecycle("presence_disconnected_lost.json"))
    # Then the device stays connected
    assert not outcome.applied
    assert outcome.state.status == "connected"


def test_late_connect_still_records_when_its_session_started() -> None:
    # Given a disconnect that arrived before the connect of the same session
    state = state_after(lifecycle("presence_disconnected_lost.json"))
    # When that connect arrives
    outcome = apply_event(state, lifecycle("presence_connected.json"))
    # Then the device stays disconnected but the session's start is known
    assert not outcome.applied
    assert outcome.state.status == "disconnected"
    assert outcome.state.connected_at == lifecycle("presence_connected.json").occurred_at


def test_connect_keeps_the_last_disconnect_on_record() -> None:
    state = state_after(lifecycle("presence_disconnected_lost.json"), lifecycle("presence_reconnected.json"))
    assert state.disconnect_reason == "CONNECTION_LOST"
    assert state.disconnected_at == at(0)


# Distinct moments of one device's life (the clean disconnect shares the lost one's instant).
EVENT_FILES = [
    "presence_connected.json",
    "presence_disconnected_lost.json",
    "presence_keepalive_timeout.json",
    "presence_reconnected.json",
]


@given(st.lists(st.sampled_from(EVENT_FILES), min_size=1, max_size=12))
def test_any_delivery_order_with_duplicates_ends_in_the_newest_events_state(names: list[str]) -> None:
    # Given any arrival order of lifecycle events, with duplicates
    events = [lifecycle(name) for name in names]
    # When they are applied in that order
    state = state_after(*events)
    # Then the device is where the newest event put it, as if they had arrived in order
    newest = max(events, key=order_key)
    in_order = state_after(*sorted(events, key=order_key))
    assert (state.status, state.event_order, state.event_at, state.session_id) == (
        newest.event_type,
        order_key(newest),
        newest.occurred_at,
        newest.session_identifier,
    )
    assert (state.connected_at, state.connected_session) == (in_order.connected_at, in_order.connected_session)


# ---- classification ------------------------------------------------------------------------------


def test_client_initiated_disconnect_is_clean() -> None:
    assert classify_disconnect(True, "CLIENT_INITIATED_DISCONNECT", POLICY) == "clean"


@pytest.mark.parametrize(
    ("client_initiated", "reason"), [(True, "CONNECTION_LOST"), (False, "CLIENT_INITIATED_DISCONNECT")]
)
def test_disconnect_is_clean_when_either_field_says_the_client_meant_it(client_initiated: bool, reason: str) -> None:
    # Given the two fields disagreeing (AWS has been seen to do this)
    # Then the disconnect counts as clean
    assert classify_disconnect(client_initiated, reason, POLICY) == "clean"


@pytest.mark.parametrize("reason", ["CONNECTION_LOST", "MQTT_KEEP_ALIVE_TIMEOUT", "SERVER_ERROR", None])
def test_every_unexpected_disconnect_alerts_by_default(reason: str | None) -> None:
    assert classify_disconnect(False, reason, POLICY) == "alerting"


def test_reason_outside_the_configured_alert_reasons_is_unexpected_but_silent() -> None:
    # Given a policy that alerts on lost connections only
    policy = PresencePolicy(alert_reasons=frozenset({"CONNECTION_LOST"}))
    # Then a keep-alive timeout is unexpected but does not alert
    assert classify_disconnect(False, "MQTT_KEEP_ALIVE_TIMEOUT", policy) == "unexpected"
    assert classify_disconnect(False, "CONNECTION_LOST", policy) == "alerting"


# ---- scheduling and checks -----------------------------------------------------------------------


def test_check_is_due_one_grace_period_after_the_disconnect() -> None:
    check = check_for(lifecycle("presence_disconnected_lost.json"), PresencePolicy(grace=timedelta(seconds=90)))
    assert check.due_at == at(90)


def test_delay_counts_from_now_and_stays_within_what_sqs_allows() -> None:
    assert delay_seconds(at(60), at(0.4)) == 60
    assert delay_seconds(at(60), at(75)) == 0
    assert delay_seconds(at(3600), at(0)) == 900


def lost_state() -> tuple[PresenceState, CheckRequest]:
    lost = lifecycle("presence_disconnected_lost.json")
    return state_after(lifecycle("presence_connected.json"), lost), check_for(lost, POLICY)


def test_check_alerts_when_device_is_still_down_after_the_grace() -> None:
    state, check = lost_state()
    assert decide_check(check, state, at(61), POLICY).action == "alert"


def test_check_skips_when_device_reconnected() -> None:
    state, check = lost_state()
    state = apply_event(state, lifecycle("presence_reconnected.json")).state
    decision = decide_check(check, state, at(61), POLICY)
    assert (decision.action, decision.reason) == ("skip", "reconnected")


def test_check_skips_an_episode_a_newer_disconnect_replaced() -> None:
    # Given a device that dropped, came back within the grace and dropped again
    state, first_check = lost_state()
    back = lifecycle(
        "presence_reconnected.json", timestamp=lifecycle("presence_disconnected_lost.json").timestamp + 5000
    )
    dropped_again = lifecycle(
        "presence_keepalive_timeout.json", sessionIdentifier=back.session_identifier, versionNumber=8
    )
    state = apply_event(apply_event(state, back).state, dropped_again).state
    # When the first episode's check comes due
    decision = decide_check(first_check, state, at(61), POLICY)
    # Then it leaves the alert to the newer episode's own check
    assert (decision.action, decision.reason) == ("skip", "superseded")


def test_check_delivered_early_is_rescheduled_for_the_rest_of_the_grace() -> None:
    state, check = lost_state()
    decision = decide_check(check, state, at(20), POLICY)
    assert (decision.action, decision.delay_seconds) == ("reschedule", 40)


def test_check_skips_once_the_alert_was_sent() -> None:
    state, check = lost_state()
    state = marked_sent(
        claimed(state, "alert", check.episode_id, "m1", at(61)), "alert", check.episode_id, "m1", at(62)
    )
    assert decide_check(check, state, at(70), POLICY).reason == "already_alerted"


def test_check_for_unknown_device_is_skipped() -> None:
    _, check = lost_state()
    assert decide_check(check, None, at(61), POLICY).reason == "unknown_device"


# ---- claims --------------------------------------------------------------------------------------


def test_first_claim_of_an_episode_wins_and_a_second_token_loses() -> None:
    # Given a device still down in its episode
    state, check = lost_state()
    assert can_claim("alert", state, check.episode_id, "message-1", at(0))
    # When message-1 claims the alert
    state = claimed(state, "alert", check.episode_id, "message-1", at(61))
    # Then a duplicate message may not, but message-1's own redelivery may
    assert not can_claim("alert", state, check.episode_id, "message-2", at(0))
    assert can_claim("alert", state, check.episode_id, "message-1", at(0))


def test_stale_claim_that_was_never_sent_can_be_taken_over() -> None:
    state, check = lost_state()
    state = claimed(state, "alert", check.episode_id, "crashed", at(61))
    assert can_claim("alert", state, check.episode_id, "other", stale_before=at(300))


def test_nobody_claims_an_alert_that_was_sent() -> None:
    state, check = lost_state()
    state = marked_sent(
        claimed(state, "alert", check.episode_id, "m1", at(61)), "alert", check.episode_id, "m1", at(62)
    )
    assert not can_claim("alert", state, check.episode_id, "m1", stale_before=at(10_000))


def test_alert_cannot_be_claimed_once_the_device_is_back() -> None:
    state, check = lost_state()
    state = apply_event(state, lifecycle("presence_reconnected.json")).state
    assert not can_claim("alert", state, check.episode_id, "m1", at(0))


def test_reconnect_notice_is_owed_only_after_an_alert() -> None:
    # Given a device that reconnected, once without and once after an alert
    state, check = lost_state()
    back = lifecycle("presence_reconnected.json")
    quiet = apply_event(state, back).state
    alerted = apply_event(claimed(state, "alert", check.episode_id, "m1", at(61)), back).state
    # Then only the alerted episode owes a "reconnected" email
    assert reconnect_notice_due(quiet) is None
    assert reconnect_notice_due(alerted) == check.episode_id


# ---- Last Will -----------------------------------------------------------------------------------


def test_last_will_message_is_a_shadow_report_for_its_own_thing() -> None:
    # Given the Pi's Last Will as seed 001 registers it
    will = load_event("lwt_message.json")
    # When the rule republishes it
    # Then it is a valid shadow document saying "not connected", for the thing in its topic
    assert LastWillMessage.model_validate(will["payload"]).state.reported == {"connected": "false"}
    assert shadow_update_topic(will["topic"]) == "$aws/things/RPI/shadow/update"


def test_only_last_will_topics_are_republished() -> None:
    assert shadow_update_topic("pi/1") is None
    assert shadow_update_topic("my/things/RPI/update/extra") is None
