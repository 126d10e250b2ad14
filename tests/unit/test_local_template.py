"""Reading and resolving SAM templates for the local stack (gasmon_local.template, .stack)."""

from pathlib import Path
from typing import Any

import pytest

from gasmon_local.functions import ROOT
from gasmon_local.stack import Options, function_environments, local_parameter_overrides, process_environment
from gasmon_local.template import Stack, StackContext, TemplateError, load

FIXTURE = ROOT / "tests" / "fixtures" / "presence" / "template.yaml"
CONTEXT = StackContext(aws_endpoint="http://127.0.0.1:4566")
REGION_ACCOUNT = "ap-northeast-2:123456789012"


def fixture_stack(**overrides: str) -> Stack:
    return Stack.from_file(FIXTURE, CONTEXT, overrides)


def inline(resources: dict[str, Any], parameters: dict[str, Any] | None = None, **extra: Any) -> Stack:
    return Stack({"Parameters": parameters or {}, "Resources": resources, **extra}, CONTEXT)


def test_parameters_take_defaults_and_overrides() -> None:
    stack = fixture_stack(GracePeriodSeconds="5")
    assert stack.parameters["GracePeriodSeconds"] == "5"
    assert stack.parameters["Stage"] == "Dev"


def test_an_override_for_an_undeclared_parameter_is_an_error() -> None:
    with pytest.raises(TemplateError, match="Nope"):
        fixture_stack(Nope="1")


def test_a_parameter_without_default_needs_a_value() -> None:
    with pytest.raises(TemplateError, match="Required"):
        Stack({"Parameters": {"Required": {"Type": "String"}}, "Resources": {}}, CONTEXT)


@pytest.mark.parametrize(
    ("value", "resolved"),
    [
        ({"Ref": "AWS::Region"}, "ap-northeast-2"),
        (
            {"Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:x"},
            "arn:aws:sns:ap-northeast-2:123456789012:x",
        ),
        (
            {"Fn::Sub": "${Queue.Arn}|${Queue}|${!Literal}"},
            "arn:aws:sqs:ap-northeast-2:123456789012:gasmon-Queue|http://127.0.0.1:4566/123456789012/gasmon-Queue|${Literal}",
        ),
        ({"Fn::Sub": ["${a}-${Name}", {"a": "A"}]}, "A-pi"),
        ({"Fn::Join": ["*", {"Fn::Split": ["{groupid}", "pi/{groupid}/x"]}]}, "pi/*/x"),
        ({"Fn::Select": [1, ["a", "b"]]}, "b"),
        ({"Fn::GetAtt": ["Table", "Arn"]}, "arn:aws:dynamodb:ap-northeast-2:123456789012:table/gasmon-Table"),
        ({"Fn::GetAtt": "Topic.TopicName"}, "gasmon-Topic"),
        ({"Ref": "Topic"}, "arn:aws:sns:ap-northeast-2:123456789012:gasmon-Topic"),
        ({"Fn::GetAtt": ["Fn", "Arn"]}, "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-Fn"),
        ({"Fn::GetAtt": ["FnRole", "Arn"]}, "arn:aws:iam::123456789012:role/gasmon-FnRole"),
        ({"Fn::GetAtt": ["Domain", "DomainEndpoint"]}, "Domain.DomainEndpoint"),
        ({"Fn::ToJsonString": {"a": 1}}, '{"a":1}'),
        (["x", {"Ref": "AWS::NoValue"}], ["x"]),
    ],
)
def test_intrinsic_functions_resolve_to_local_names(value: Any, resolved: Any) -> None:
    stack = inline(
        {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Table": {"Type": "AWS::DynamoDB::Table"},
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Fn": {"Type": "AWS::Serverless::Function"},
            "Domain": {"Type": "AWS::OpenSearchService::Domain"},
        },
        {"Name": {"Type": "String", "Default": "pi"}},
    )
    assert stack.resolve(value) == resolved


def test_conditions_decide_if_and_which_resources_exist() -> None:
    without_email = fixture_stack()
    with_email = fixture_stack(AlertEmail="ops@example.com")
    assert "AlertSubscription" not in without_email.of_type("AWS::SNS::Subscription")
    assert [(s.protocol, s.endpoint) for s in with_email.subscriptions()] == [("email", "ops@example.com")]
    assert all(q.logical_id != "NeverCreatedQueue" for q in with_email.queues())


def test_functions_merge_globals_and_resolve_their_environment() -> None:
    functions = fixture_stack().functions()
    check = functions["CheckPresenceFunction"]
    assert check.environment == {
        "PRESENCE_TABLE": "gasmon-PresenceTable",
        "SHARED_SETTING": "from-function",  # the function's own value beats Globals
        "TOPIC_ARN": "arn:aws:sns:ap-northeast-2:123456789012:disconnected_notice",
    }
    assert check.code_uri == FIXTURE.parent / "functions" / "check_presence"
    assert (check.handler, check.timeout) == ("app.lambda_handler", 10)
    echo = functions["EchoFunction"].environment
    assert echo["JOINED"] == "Dev,b" and "MAYBE" not in echo  # If -> AWS::NoValue drops the variable


def test_api_events_become_routes_with_the_apis_key_setting() -> None:
    stack = fixture_stack()
    routes = {(r.method, r.path): r for r in stack.functions()["EchoFunction"].api_routes}
    assert routes[("GET", "/echo/{name}")].api_key_required is True  # from the Api's Auth
    assert routes[("ANY", "/public/{proxy+}")].api_key_required is False  # the event's own Auth wins
    assert routes[("GET", "/echo/{name}")].stage == "Dev"
    assert stack.unwired_events == ["EchoFunction.Nightly (Schedule)"]  # cron schedules do not run locally


def test_other_function_events_become_rules_topics_schedules_and_async_settings() -> None:
    stack = fixture_stack()
    echo = stack.functions()["EchoFunction"]
    [schedule] = echo.schedules
    assert (schedule.expression, schedule.input) == ("rate(1 hour)", '{"heartbeat": true}')
    [sns] = echo.sns_sources
    assert sns.topic_arn == "arn:aws:sns:ap-northeast-2:123456789012:disconnected_notice"
    rules = {rule.name: rule for rule in stack.topic_rules()}
    assert rules["EchoFunctionPings"].sql == "SELECT *, topic(2) AS which FROM 'fixture/+/ping'"
    assert rules["EchoFunctionPings"].actions == ({"Lambda": {"FunctionArn": echo.arn}},)
    record = stack.functions()["RecordPresenceFunction"].async_config
    assert record.max_retry_attempts == 1
    assert record.on_failure == "arn:aws:sqs:ap-northeast-2:123456789012:gasmon-presence-dlq"
    assert echo.async_config.max_retry_attempts == 2 and echo.async_config.on_failure is None


def test_sqs_events_become_event_sources() -> None:
    [source] = fixture_stack().functions()["CheckPresenceFunction"].sqs_sources
    assert source.queue_arn == "arn:aws:sqs:ap-northeast-2:123456789012:gasmon-PresenceCheckQueue"
    assert (source.batch_size, source.report_batch_item_failures) == (5, True)


def test_queues_tables_topics_and_rules() -> None:
    stack = fixture_stack()
    queues = {q.logical_id: q for q in stack.queues()}
    assert queues["PresenceCheckQueue"].attributes == {"VisibilityTimeout": "30"}
    assert queues["PresenceCheckQueue"].redrive_target_arn == queues["PresenceCheckDeadLetters"].arn
    assert queues["PresenceCheckDeadLetters"].name == "gasmon-presence-dlq"
    [table] = stack.tables()
    assert table.create_arguments["KeySchema"] == [{"AttributeName": "clientId", "KeyType": "HASH"}]
    assert table.ttl_attribute == "expires"
    assert [t.name for t in stack.topics()] == ["disconnected_notice"]
    rules = {r.name: r for r in stack.topic_rules()}
    assert rules["last_will_to_shadow"].actions[0]["Republish"]["Topic"] == "$$aws/things/${topic(3)}/shadow/update"
    assert (
        rules["LifecycleRule"].actions[0]["Lambda"]["FunctionArn"].endswith(":function:gasmon-RecordPresenceFunction")
    )


def test_gasmons_template_resolves() -> None:
    # Given the real template.yaml, Then the ingest function is wired as deployed
    stack = Stack.from_file(ROOT / "template.yaml", CONTEXT)
    ingest = stack.functions()["IngestFunction"]
    assert ingest.environment["WARNING_TOPIC"] == "pi/1"
    assert ingest.environment["POWERTOOLS_SERVICE_NAME"] == "ingest"
    assert ingest.environment["LOCAL_TIMEZONE"] == "Asia/Seoul"
    # ... its reserved concurrency, which the local runtime throttles at
    assert ingest.reserved_concurrency == 20
    assert stack.functions()["AlarmSweepFunction"].reserved_concurrency == 1
    assert {(r.method, r.path, r.api_key_required, r.stage) for r in ingest.api_routes} == {
        ("POST", "/readings", False, "Prod"),
        ("POST", "/gasdetector", False, "Prod"),
    }
    # ... behind the REQUEST authorizer on x-api-key, with its cache; the dashboard's files are not
    authorizers = {r.authorizer for r in ingest.api_routes}
    assert len(authorizers) == 1
    [authorizer] = authorizers
    assert authorizer is not None and authorizer.identity_headers == ("x-api-key",)
    assert authorizer.ttl_seconds == 300
    assert authorizer.function_arn == stack.functions()["AuthorizeRequestFunction"].arn
    assert all(r.authorizer is None for r in stack.functions()["DashboardFunction"].api_routes)
    # ... and the device policy and registry table exist locally, named as the outputs name them
    outputs = stack.outputs()
    assert outputs["DevicePolicyName"] in {policy.name for policy in stack.iot_policies()}
    assert outputs["DeviceTableName"] in {table.name for table in stack.tables()}


def test_local_overrides_fill_an_empty_email_and_route_grace_to_its_parameter() -> None:
    overrides, grace_applies = local_parameter_overrides(load(FIXTURE), Options(grace=2))
    assert overrides == {"AlertEmail": "operator@gasmon.local", "GracePeriodSeconds": "2"}
    assert grace_applies


def test_grace_without_a_grace_variable_is_reported() -> None:
    template = {
        "Parameters": {"Grace": {"Type": "Number", "Default": 60}},
        "Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Environment": {}}}},
    }
    overrides, grace_applies = local_parameter_overrides(template, Options(grace=2))
    assert not grace_applies and overrides == {}


def test_a_literal_grace_variable_still_counts() -> None:
    function = {"Environment": {"Variables": {"GRACE_SECONDS": "60"}}}
    template = {"Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": function}}}
    assert local_parameter_overrides(template, Options(grace=2)) == ({}, True)


def test_each_function_gets_the_local_overrides(tmp_path: Path) -> None:
    stack = fixture_stack()
    common = process_environment("http://moto", "http://iot", "ap-northeast-2")
    environments = function_environments(stack, common, tmp_path, grace=3)
    record = environments["RecordPresenceFunction"]
    assert record["GRACE_SECONDS"] == "3"
    assert record["AWS_ENDPOINT_URL"] == "http://moto" and record["AWS_ENDPOINT_URL_IOT_DATA"] == "http://iot"
    assert record["READING_STORE"] == "sqlite" and record["SQLITE_PATH"] == str(tmp_path / "readings.sqlite3")
    assert record["DEVICE_DIRECTORY"] == "sqlite"  # e-mails name the group and place locally
    assert record["POWERTOOLS_TRACE_DISABLED"] == "true" and record["POWERTOOLS_METRICS_NAMESPACE"] == "gasmon"
    assert environments["CheckPresenceFunction"]["SHARED_SETTING"] == "from-function"
    # The query API's cursor key is made once per data directory and kept (mode 600)
    assert len(record["CURSOR_KEY"]) >= 40
    assert (
        function_environments(stack, common, tmp_path, grace=3)["RecordPresenceFunction"]["CURSOR_KEY"]
        == (record["CURSOR_KEY"])
    )
    assert (tmp_path / "cursor-key").stat().st_mode & 0o777 == 0o600


def test_an_event_source_mapping_resource_feeds_its_queue_to_the_function() -> None:
    # Given gasmon's template, whose check queue reaches CheckPresenceFunction through an
    # AWS::Lambda::EventSourceMapping rather than a SAM SQS event
    stack = Stack.from_file(ROOT / "template.yaml")
    # When the functions are read
    sources = stack.functions()["CheckPresenceFunction"].sqs_sources
    # Then the queue is polled for it, with partial batch failures honoured
    assert [(s.queue_arn.rsplit(":", 1)[-1], s.report_batch_item_failures) for s in sources] == [
        ("gasmon-PresenceCheckQueue", True)
    ]
