"""The presence resources agree with the code: environment variables are settings the functions
read, the rules listen where the domain expects, the Last Will lands in the shadow."""

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from gasmon.presence import LAST_WILL_TOPIC_FILTER, shadow_update_topic
from gasmon.settings import CheckPresenceSettings, RecordPresenceSettings

ROOT = Path(__file__).resolve().parents[2]


def load_template() -> dict[str, Any]:
    template, problems = decode_str((ROOT / "template.yaml").read_text())
    assert not problems, problems
    return dict(template)


RESOURCES = load_template()["Resources"]


def sub_text(value: Any) -> str:
    """The text a plain string or an `!Sub` renders, with `${!x}` escapes undone."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{!", "${", text)


@pytest.mark.parametrize(
    ("logical_id", "settings"),
    [("RecordPresenceFunction", RecordPresenceSettings), ("CheckPresenceFunction", CheckPresenceSettings)],
)
def test_every_environment_variable_is_a_setting_the_function_reads(logical_id: str, settings: type) -> None:
    variables = RESOURCES[logical_id]["Properties"]["Environment"]["Variables"]
    known = {name.upper() for name in settings.model_fields}
    assert {name for name in variables if not name.startswith("POWERTOOLS_")} <= known  # those are Powertools'
    assert variables["POWERTOOLS_SERVICE_NAME"] == "presence"
    assert {"PRESENCE_TABLE", "CHECK_QUEUE_URL", "ALERT_TOPIC_ARN"} <= set(variables)


@pytest.mark.parametrize("logical_id", ["RecordPresenceFunction", "CheckPresenceFunction"])
def test_code_uri_holds_the_handler(logical_id: str) -> None:
    properties = RESOURCES[logical_id]["Properties"]
    module, _ = properties["Handler"].split(".")
    assert (ROOT / properties["CodeUri"] / f"{module}.py").is_file()


def test_lifecycle_rule_feeds_every_connect_and_disconnect_to_the_record_function() -> None:
    payload = RESOURCES["PresenceLifecycleRule"]["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == (
        "SELECT * FROM '$aws/events/presence/+/+' WHERE eventType = 'connected' OR eventType = 'disconnected'"
    )
    assert payload["Actions"][0]["Lambda"]["FunctionArn"] == {"Fn::GetAtt": ["RecordPresenceFunction", "Arn"]}
    assert "ErrorAction" in payload


def test_last_will_rule_republishes_where_the_domain_says() -> None:
    # Given the rule's topic filter and republish target
    payload = RESOURCES["LastWillShadowRule"]["Properties"]["TopicRulePayload"]
    republish = payload["Actions"][0]["Republish"]
    # Then it listens on the seed's Last Will topic and writes `$aws/things/<topic(3)>/shadow/update`
    assert payload["Sql"] == f"SELECT * FROM '{LAST_WILL_TOPIC_FILTER}'"
    target = sub_text(republish["Topic"]).replace("$$", "$").replace("${topic(3)}", "RPI")
    assert target == shadow_update_topic("my/things/RPI/update")


def test_republish_role_may_only_publish_to_shadow_updates() -> None:
    [policy] = RESOURCES["LastWillRepublishRole"]["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "iot:Publish"
    assert sub_text(statement["Resource"]).endswith(":topic/$aws/things/*/shadow/update")


def test_notice_topic_keeps_the_seed_name_and_is_encrypted() -> None:
    properties = RESOURCES["DisconnectedNoticeTopic"]["Properties"]
    assert sub_text(properties["TopicName"]).endswith("-disconnected_notice")
    assert properties["KmsMasterKeyId"] == "alias/aws/sns"


def test_device_policy_names_no_wildcard_action() -> None:
    statements = RESOURCES["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    actions = [statement["Action"] for statement in statements]
    assert actions == ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"]
    connect = sub_text(statements[0]["Resource"])
    assert connect.endswith(":client/${iot:Connection.Thing.ThingName}")


def test_devices_hear_the_warning_topic_the_template_is_given_not_a_literal() -> None:
    # Given the device policy's subscribe and receive statements
    statements = RESOURCES["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_action = {statement["Action"]: statement["Resource"] for statement in statements}
    for action, kind in (("iot:Subscribe", "topicfilter"), ("iot:Receive", "topic")):
        warning = by_action[action][0]["Fn::Sub"]
        # Then the warning topic comes from the WarningTopic parameter, `{groupid}` as a wildcard
        assert warning[0].endswith(f":{kind}/${{Topic}}")
        assert warning[1]["Topic"] == {"Fn::Join": ["*", {"Fn::Split": ["{groupid}", {"Ref": "WarningTopic"}]}]}
    # And the ingest function may publish to the same resource
    ingest = RESOURCES["IngestFunction"]["Properties"]["Policies"][0]["Statement"][0]
    assert ingest["Resource"]["Fn::Sub"][1] == warning[1]


def principals(statement: dict[str, Any]) -> list[Any]:
    named = statement["Principal"]["AWS"]
    return list(named) if isinstance(named, list) else [named]


@pytest.mark.parametrize("logical_id", ["RecordPresenceFunction", "CheckPresenceFunction"])
def test_emails_name_the_group_from_opensearch_with_search_only_access(logical_id: str) -> None:
    # Given the function's environment and its inline policy statements
    properties = RESOURCES[logical_id]["Properties"]
    variables = properties["Environment"]["Variables"]
    statements = [s for policy in properties["Policies"] if "Statement" in policy for s in policy["Statement"]]
    # Then its device directory is the readings index
    assert variables["DEVICE_DIRECTORY"] == "opensearch"
    assert variables["OPENSEARCH_INDEX"] == "gasdetect"
    # And it may only search that index, never write to it
    (search,) = [s for s in statements if any(str(a).startswith("es:") for a in s["Action"])]
    assert sorted(search["Action"]) == ["es:ESHttpGet", "es:ESHttpPost"]
    resources = search["Resource"]["Fn::If"][1:]
    assert all(sub_text(r).endswith("/gasdetect*/_search") for r in resources)
    # And the domain this stack creates lets its role in for the same paths
    (statement,) = [
        s
        for s in RESOURCES["ReadingsDomain"]["Properties"]["AccessPolicies"]["Statement"]
        if {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]} in principals(s)
    ]
    assert sub_text(statement["Resource"]).endswith("/gasdetect*/_search")
