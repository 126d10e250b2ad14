"""Shared subscription groups: parsing `$share/<group>/<filter>` and picking one member per group."""

from __future__ import annotations

from gasmon_local.shared_subscriptions import SharedSubscriptions, parse_shared


def exact(topic: str, topic_filter: str) -> bool:
    return topic == topic_filter


def test_parse_shared_splits_group_and_filter() -> None:
    assert parse_shared("$share/g/test/topic") == ("g", "test/topic")
    assert parse_shared("$share/g/#") == ("g", "#")
    assert parse_shared("test/topic") is None
    assert parse_shared("$share/g") is None
    assert parse_shared("$share//t") is None
    assert parse_shared("$share/g+/t") is None


def test_each_message_goes_to_one_member_per_group_in_turn() -> None:
    # Given group g with members a and b, and group h with member c, on the same filter
    shared: SharedSubscriptions[str] = SharedSubscriptions()
    shared.subscribe("g", "t", "a", "session-a", 1)
    shared.subscribe("g", "t", "b", "session-b", 0)
    shared.subscribe("h", "t", "c", "session-c", 1)
    # When four messages arrive
    picks = [shared.pick("t", exact, lambda s: True) for _ in range(4)]
    # Then g alternates a, b and h always gets c, each with its subscription's QoS
    assert [p[0] for p in picks] == [("session-a", 1), ("session-b", 0), ("session-a", 1), ("session-b", 0)]
    assert all(p[1] == ("session-c", 1) for p in picks)


def test_a_member_that_cannot_take_a_message_is_skipped_not_dropped() -> None:
    shared: SharedSubscriptions[str] = SharedSubscriptions()
    shared.subscribe("g", "t", "a", "a", 1)
    shared.subscribe("g", "t", "b", "b", 1)
    assert shared.pick("t", exact, lambda s: s != "a") == [("b", 1)]
    assert shared.pick("t", exact, lambda s: s != "a") == [("b", 1)]
    assert shared.pick("t", exact, lambda s: False) == []


def test_unsubscribe_and_drop_client_remove_members_and_empty_groups() -> None:
    shared: SharedSubscriptions[str] = SharedSubscriptions()
    shared.subscribe("g", "t", "a", "a", 1)
    shared.subscribe("g", "t", "a", "a2", 0)  # a repeated SUBSCRIBE replaces, does not add
    shared.subscribe("h", "t", "a", "a", 1)
    assert shared.pick("t", exact, lambda s: True) == [("a2", 0), ("a", 1)]
    assert shared.unsubscribe("g", "t", "a") == 1
    assert shared.unsubscribe("g", "t", "a") == 0
    shared.drop_client("a")
    assert shared.groups == {}
    assert shared.pick("t", exact, lambda s: True) == []
