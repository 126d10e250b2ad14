"""The local rules engine running template rules' actions (gasmon_local.rules)."""

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from gasmon_local.rules import RuleEngine, load_rules
from gasmon_local.template import Stack, StackContext, TopicRuleSpec, load

LAMBDA_ARN = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-RecordPresenceFunction"


class FakeTargets:
    """Records what the actions did; `fail` makes one kind of action raise."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.invoked: list[tuple[str, Any]] = []
        self.published: list[tuple[str, Any, int]] = []
        self.sns: list[tuple[str, str]] = []
        self.sqs: list[tuple[str, str]] = []
        self.engine: RuleEngine | None = None

    def invoke_lambda(self, function_arn: str, event: Any, source: str) -> None:
        if self.fail == "lambda":
            raise RuntimeError("throttled")
        self.invoked.append((function_arn, event))

    async def republish(self, topic: str, payload: bytes, qos: int) -> None:
        self.published.append((topic, json.loads(payload), qos))
        if self.engine is not None:  # like the broker: republished messages meet the rules again
            await self.engine.on_message(topic, payload, None, 1)

    def sns_publish(self, topic_arn: str, message: str) -> None:
        self.sns.append((topic_arn, message))

    def sqs_send(self, queue_url: str, body: str) -> None:
        self.sqs.append((queue_url, body))


def rule(
    name: str, sql: str, *actions: dict[str, Any], error_action: dict[str, Any] | None = None, disabled: bool = False
):
    return TopicRuleSpec(name, name, sql, "2016-03-23", disabled, tuple(actions), error_action)


def fire(engine: RuleEngine, topic: str, payload: Any, client_id: str | None = "rpi-7") -> list[str]:
    return asyncio.run(engine.on_message(topic, json.dumps(payload).encode(), client_id, 1_700_000_000_000))


LIFECYCLE = rule("Lifecycle", "SELECT * FROM '$aws/events/presence/+/+'", {"Lambda": {"FunctionArn": LAMBDA_ARN}})
LAST_WILL = rule(
    "LastWill",
    "SELECT * FROM 'my/things/+/update'",
    {"Republish": {"Topic": "$$aws/things/${topic(3)}/shadow/update", "Qos": 1}},
)
DISCONNECT = {"clientId": "rpi-7", "eventType": "disconnected", "clientInitiatedDisconnect": False}


def test_a_matching_message_invokes_the_rule_function_with_the_sql_result() -> None:
    # Given the lifecycle rule, When a disconnected event arrives, Then its function gets the event
    targets = FakeTargets()
    engine = RuleEngine(load_rules([LIFECYCLE]), targets)
    assert fire(engine, "$aws/events/presence/disconnected/rpi-7", DISCONNECT) == ["Lifecycle"]
    assert targets.invoked == [(LAMBDA_ARN, DISCONNECT)]


def test_other_topics_do_not_fire_the_rule() -> None:
    targets = FakeTargets()
    engine = RuleEngine(load_rules([LIFECYCLE]), targets)
    assert fire(engine, "pi/1", {"warning": "no2 warning"}) == []
    assert targets.invoked == []


def test_a_false_where_clause_runs_no_action() -> None:
    targets = FakeTargets()
    unexpected = rule(
        "Unexpected",
        "SELECT * FROM '$aws/events/presence/disconnected/+' WHERE clientInitiatedDisconnect = false",
        {"Lambda": {"FunctionArn": LAMBDA_ARN}},
    )
    engine = RuleEngine(load_rules([unexpected]), targets)
    fire(engine, "$aws/events/presence/disconnected/rpi-7", DISCONNECT | {"clientInitiatedDisconnect": True})
    assert targets.invoked == []


def test_republish_fills_the_topic_template_into_the_shadow_topic() -> None:
    # Given the seed's Last Will rule, When the will arrives, Then it is republished to the shadow
    targets = FakeTargets()
    engine = RuleEngine(load_rules([LAST_WILL]), targets)
    will = {"state": {"reported": {"connected": "false"}}}
    fire(engine, "my/things/rpi-7/update", will)
    assert targets.published == [("$aws/things/rpi-7/shadow/update", will, 1)]


def test_sns_and_sqs_actions_get_the_result() -> None:
    targets = FakeTargets()
    engine = RuleEngine(
        load_rules(
            [
                rule(
                    "Fanout",
                    "SELECT value FROM 'sensors/+'",
                    {"Sns": {"TargetArn": "arn:topic", "MessageFormat": "RAW"}},
                    {"Sqs": {"QueueUrl": "http://q", "UseBase64": True}},
                )
            ]
        ),
        targets,
    )
    fire(engine, "sensors/a", {"value": 3, "other": 1})
    assert targets.sns == [("arn:topic", '{"value": 3}')]
    assert targets.sqs == [("http://q", base64.b64encode(b'{"value": 3}').decode())]


def test_a_failing_action_runs_the_error_action() -> None:
    targets = FakeTargets(fail="lambda")
    failing = rule(
        "Failing",
        "SELECT * FROM 'a/b'",
        {"Lambda": {"FunctionArn": LAMBDA_ARN}},
        error_action={"Republish": {"Topic": "errors/${topic(1)}"}},
    )
    engine = RuleEngine(load_rules([failing]), targets)
    fire(engine, "a/b", {"x": 1}, client_id="dev")
    [(topic, error, _)] = targets.published
    assert topic == "errors/a"
    assert error["ruleName"] == "Failing" and error["clientId"] == "dev"
    assert error["failures"][0]["failedAction"] == "LambdaAction"
    assert base64.b64decode(error["base64OriginalPayload"]) == b'{"x": 1}'


def test_disabled_rules_and_unsupported_actions_are_left_out() -> None:
    rules = load_rules(
        [
            rule("Off", "SELECT * FROM 'a'", {"Lambda": {"FunctionArn": LAMBDA_ARN}}, disabled=True),
            rule("S3", "SELECT * FROM 'a'", {"S3": {"BucketName": "b"}}, {"Lambda": {"FunctionArn": LAMBDA_ARN}}),
        ]
    )
    assert [r.name for r in rules] == ["S3"]
    assert [next(iter(action)) for action in rules[0].actions] == ["Lambda"]


def test_a_republish_loop_is_cut() -> None:
    # Given a rule that republishes onto its own topic, When a message arrives, Then it stops
    targets = FakeTargets()
    loop_rule = rule("Loop", "SELECT * FROM 'loop/a'", {"Republish": {"Topic": "loop/a"}})
    engine = RuleEngine(load_rules([loop_rule]), targets)
    targets.engine = engine
    fire(engine, "loop/a", {"n": 1})
    assert 1 < len(targets.published) <= 10


def test_a_binary_payload_reaches_lambda_base64_encoded() -> None:
    targets = FakeTargets()
    engine = RuleEngine(
        load_rules([rule("Raw", "SELECT * FROM 'raw'", {"Lambda": {"FunctionArn": LAMBDA_ARN}})]), targets
    )
    asyncio.run(engine.on_message("raw", b"\x00binary", None, 1))
    assert targets.invoked == [(LAMBDA_ARN, {"base64Payload": base64.b64encode(b"\x00binary").decode()})]


def test_a_rule_with_unsupported_sql_is_reported_and_not_loaded() -> None:
    problems: list[str] = []
    rules = load_rules([rule("Odd", "SELECT parse_time('yyyy', timestamp()) AS t FROM 'a'"), LIFECYCLE], problems)
    assert [r.name for r in rules] == ["Lifecycle"]
    assert len(problems) == 1 and problems[0].startswith("rule Odd:")


def test_the_template_lifecycle_rule_passes_connects_and_disconnects_but_not_refused_connects() -> None:
    # Given template.yaml's own presence rule in the local rules engine
    stack = Stack(load(Path(__file__).resolve().parents[2] / "template.yaml"), StackContext(), {})
    (presence_rule,) = [spec for spec in stack.topic_rules() if spec.logical_id == "PresenceLifecycleRule"]
    targets = FakeTargets()
    engine = RuleEngine(load_rules([presence_rule]), targets)
    # When a refused CONNECT's connect_failed event arrives, Then the presence function is not invoked
    refused = {"clientId": "rpi-7", "eventType": "connect_failed", "failureType": "AUTHORIZATION_FAILED"}
    assert fire(engine, "$aws/events/presence/connect_failed/rpi-7", refused) == []
    # When a connect and an unexpected disconnect arrive, Then both reach the function unchanged
    connected = {"clientId": "rpi-7", "eventType": "connected"}
    fire(engine, "$aws/events/presence/connected/rpi-7", connected)
    fire(engine, "$aws/events/presence/disconnected/rpi-7", DISCONNECT)
    assert [event for _, event in targets.invoked] == [connected, DISCONNECT]
