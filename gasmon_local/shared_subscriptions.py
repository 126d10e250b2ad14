"""Shared subscriptions (`$share/<group>/<filter>`), as AWS IoT Core offers them to MQTT 3.1.1 clients.

amqtt 0.12 treats `$share/g/t` as an ordinary filter that no topic ever matches, so a shared
subscriber is granted its QoS and then gets nothing. Here each group is a list of members; a
message on a topic that matches the group's filter goes to exactly one member that can take it
now (round robin over the members, skipping those that are offline or may not receive it).
Retained messages are not sent to shared subscriptions, as in AWS. Pure: the broker supplies
the topic matcher and who can take a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PREFIX = "$share/"


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """(group, filter) of a `$share/<group>/<filter>` subscription; None if it is not a valid one."""
    if not topic_filter.startswith(PREFIX):
        return None
    group, sep, inner = topic_filter[len(PREFIX) :].partition("/")
    if not sep or not group or not inner or any(c in group for c in "+#"):
        return None
    return group, inner


@dataclass
class _Group[S]:
    members: list[tuple[str, S, int]] = field(default_factory=list)  # (client id, session, qos)
    next: int = 0


class SharedSubscriptions[S]:
    """The shared subscription groups of one broker, keyed by (group, filter)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], _Group[S]] = {}

    def subscribe(self, group: str, topic_filter: str, client_id: str, session: S, qos: int) -> None:
        members = self.groups.setdefault((group, topic_filter), _Group()).members
        for index, (member, _, _) in enumerate(members):
            if member == client_id:  # a repeated SUBSCRIBE replaces the member's QoS and session
                members[index] = (client_id, session, qos)
                return
        members.append((client_id, session, qos))

    def unsubscribe(self, group: str, topic_filter: str, client_id: str) -> int:
        entry = self.groups.get((group, topic_filter))
        if entry is None:
            return 0
        before = len(entry.members)
        entry.members = [m for m in entry.members if m[0] != client_id]
        if not entry.members:
            del self.groups[(group, topic_filter)]
        return before - len(entry.members)

    def drop_client(self, client_id: str) -> None:
        for group, topic_filter in list(self.groups):
            self.unsubscribe(group, topic_filter, client_id)

    def pick(
        self, topic: str, matches: Callable[[str, str], bool], can_take: Callable[[S], bool]
    ) -> list[tuple[S, int]]:
        """One (session, qos) per group whose filter matches `topic`, rotating through its members."""
        chosen = []
        for (_, topic_filter), entry in self.groups.items():
            if not matches(topic, topic_filter):
                continue
            count = len(entry.members)
            for step in range(count):
                index = (entry.next + step) % count
                _, session, qos = entry.members[index]
                if can_take(session):
                    entry.next = (index + 1) % count
                    chosen.append((session, qos))
                    break
        return chosen
