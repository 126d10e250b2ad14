"""The local IoT policy evaluator on the examples of AWS's "AWS IoT Core policy examples" pages."""

from __future__ import annotations

from typing import Any

import pytest

from gasmon_local.iot_policy import (
    CONNECT,
    PUBLISH,
    RECEIVE,
    SUBSCRIBE,
    Arns,
    Connection,
    PolicyUnreadableError,
    evaluate,
    parse_policy,
    readable_policies,
)

ARNS = Arns("us-east-1", "123456789012")
ARN = "arn:aws:iot:us-east-1:123456789012"


def policy(*statements: dict[str, Any], name: str = "p") -> Any:
    return parse_policy(name, {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


THING_CONNECT = allow(
    "iot:Connect",
    f"{ARN}:client/${{iot:Connection.Thing.ThingName}}",
    Condition={"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
)


def test_a_thing_connects_only_with_its_own_name_as_client_id() -> None:
    # Given AWS's "connect as the registered thing" policy
    policies = [policy(THING_CONNECT)]
    # When the client id is the attached thing's name, Then it may connect
    assert evaluate(policies, CONNECT, ARNS.client("thing1"), Connection("thing1", "thing1")).allowed
    # When the client id is another name (no attached thing of that name), Then it may not
    assert not evaluate(policies, CONNECT, ARNS.client("thing2"), Connection("thing2", None)).allowed


def test_is_attached_condition_fails_without_an_attached_thing() -> None:
    # Given a policy on a literal client id that still requires an attached thing
    policies = [
        policy(allow("iot:Connect", f"{ARN}:client/c1", Condition={"Bool": {"iot:Connection.Thing.IsAttached": True}}))
    ]
    assert evaluate(policies, CONNECT, ARNS.client("c1"), Connection("c1", "c1")).allowed
    assert not evaluate(policies, CONNECT, ARNS.client("c1"), Connection("c1", None)).allowed


def test_star_matches_any_characters_across_topic_levels() -> None:
    policies = [policy(allow("iot:Publish", f"{ARN}:topic/some/*"))]
    connection = Connection("c")
    assert evaluate(policies, PUBLISH, ARNS.topic("some/a/b/c"), connection).allowed
    assert not evaluate(policies, PUBLISH, ARNS.topic("other/a"), connection).allowed


def test_question_mark_matches_exactly_one_character() -> None:
    policies = [policy(allow("iot:Connect", f"{ARN}:client/client?"))]
    assert evaluate(policies, CONNECT, ARNS.client("client1"), Connection("client1")).allowed
    assert not evaluate(policies, CONNECT, ARNS.client("client12"), Connection("client12")).allowed


def test_mqtt_wildcards_in_a_topic_filter_resource_are_literal_characters() -> None:
    # Given a policy allowing the subscription filter ".../shadow/+" (AWS reads + literally)
    policies = [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/$aws/things/thing1/shadow/+"))]
    connection = Connection("thing1")
    assert evaluate(policies, SUBSCRIBE, ARNS.topic_filter("$aws/things/thing1/shadow/+"), connection).allowed
    assert not evaluate(policies, SUBSCRIBE, ARNS.topic_filter("$aws/things/thing1/shadow/update"), connection).allowed
    assert not evaluate(policies, SUBSCRIBE, ARNS.topic_filter("$aws/things/thing1/shadow/#"), connection).allowed


def test_a_star_topic_filter_resource_allows_mqtt_wildcard_filters() -> None:
    policies = [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/test/*"))]
    assert evaluate(policies, SUBSCRIBE, ARNS.topic_filter("test/#"), Connection("c")).allowed
    assert not evaluate(policies, SUBSCRIBE, ARNS.topic_filter("$aws/events/#"), Connection("c")).allowed


def test_subscribe_and_receive_resources_are_different_kinds() -> None:
    # A topicfilter/ grant does not allow iot:Receive on topic/, and the other way round
    policies = [policy(allow("iot:Subscribe", f"{ARN}:topicfilter/pi/1"))]
    assert not evaluate(policies, RECEIVE, ARNS.topic("pi/1"), Connection("c")).allowed
    assert not evaluate(policies, SUBSCRIBE, ARNS.topic("pi/1"), Connection("c")).allowed


def test_an_explicit_deny_overrides_any_allow_in_any_policy() -> None:
    policies = [
        policy(allow("iot:*", f"{ARN}:topic/*"), name="broad"),
        policy(deny("iot:Publish", f"{ARN}:topic/secret"), name="guard"),
    ]
    decision = evaluate(policies, PUBLISH, ARNS.topic("secret"), Connection("c"))
    assert not decision.allowed and decision.policy == "guard"
    assert "explicitly denied by guard" in decision.because
    assert evaluate(policies, PUBLISH, ARNS.topic("open"), Connection("c")).allowed


def test_nothing_matching_is_an_implicit_deny() -> None:
    decision = evaluate([policy(allow("iot:Publish", f"{ARN}:topic/a"))], RECEIVE, ARNS.topic("a"), Connection("c"))
    assert not decision.allowed and decision.policy is None
    assert decision.because == "no statement of p allows it (implicit deny)"
    assert evaluate([], RECEIVE, ARNS.topic("a"), Connection("c")).because == "no policy is attached (implicit deny)"


def test_action_names_match_case_insensitively_and_with_wildcards() -> None:
    policies = [policy(allow(["IOT:publish", "iot:Rec*"], f"{ARN}:topic/t"))]
    assert evaluate(policies, PUBLISH, ARNS.topic("t"), Connection("c")).allowed
    assert evaluate(policies, RECEIVE, ARNS.topic("t"), Connection("c")).allowed
    assert not evaluate(policies, SUBSCRIBE, ARNS.topic_filter("t"), Connection("c")).allowed


def test_client_id_variable_scopes_topics_to_the_connection() -> None:
    policies = [policy(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}/data"))]
    assert evaluate(policies, PUBLISH, ARNS.topic("dev1/data"), Connection("dev1")).allowed
    assert not evaluate(policies, PUBLISH, ARNS.topic("dev2/data"), Connection("dev1")).allowed


def test_a_thing_variable_without_a_thing_matches_nothing() -> None:
    # Given a resource that names the thing, When the connection has no attached thing
    policies = [policy(allow("iot:Publish", f"{ARN}:topic/my/things/${{iot:Connection.Thing.ThingName}}/update"))]
    # Then it does not collapse to "my/things//update" and match that
    assert not evaluate(policies, PUBLISH, ARNS.topic("my/things//update"), Connection("c", None)).allowed
    assert evaluate(policies, PUBLISH, ARNS.topic("my/things/t1/update"), Connection("t1", "t1")).allowed


def test_string_like_condition_on_the_client_id() -> None:
    policies = [
        policy(allow("iot:Connect", f"{ARN}:client/*", Condition={"StringLike": {"iot:ClientId": "monitor-*"}}))
    ]
    assert evaluate(policies, CONNECT, ARNS.client("monitor-7"), Connection("monitor-7")).allowed
    assert not evaluate(policies, CONNECT, ARNS.client("pi-7"), Connection("pi-7")).allowed


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"},
        {"Effect": "Allow", "Action": "iot:Publish", "NotResource": "*"},
        allow("iot:Publish", f"{ARN}:topic/${{iot:Connection.Thing.Attributes[group]}}"),
        allow("iot:Publish", "*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        {"Effect": "Maybe", "Action": "iot:Publish", "Resource": "*"},
    ],
)
def test_what_the_evaluator_cannot_read_is_reported_never_guessed(statement: dict[str, Any]) -> None:
    with pytest.raises(PolicyUnreadableError):
        policy(statement)
    readable, problems = readable_policies([("odd", {"Statement": [statement]})])
    assert readable == [] and "odd" in problems[0] and "not applied" in problems[0]


def test_the_templates_device_policy_is_readable() -> None:
    # Given the policy documents as gasmon-local resolves them from template.yaml
    from pathlib import Path

    from gasmon_local.template import Stack, StackContext, load

    stack = Stack(load(Path(__file__).resolve().parents[2] / "template.yaml"), StackContext(), {})
    readable, problems = readable_policies((p.name, p.document) for p in stack.iot_policies())
    assert problems == []
    device = next(p for p in readable if p.name.endswith("-device"))
    arns = Arns(StackContext().region, StackContext().account_id)
    pi = Connection("pi-1", "pi-1")
    assert evaluate([device], PUBLISH, arns.topic("$aws/things/pi-1/shadow/update"), pi).allowed
    assert not evaluate([device], PUBLISH, arns.topic("$aws/things/pi-2/shadow/update"), pi).allowed
    assert not evaluate([device], SUBSCRIBE, arns.topic_filter("$aws/events/#"), pi).allowed
