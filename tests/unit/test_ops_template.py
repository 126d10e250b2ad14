"""template.yaml as operators run it (issue 13): retention and archive wiring, the domain's replicas,
zones and logs, the operator alarms, the existing-domain Rules assertion, reserved concurrency, API
access logs, e-mail redrive, and a reason for every checkov/cfn-lint suppression.

Parameter branches are resolved the way CloudFormation would (gasmon_local.template.Stack)."""

from pathlib import Path
from typing import Any

import pytest

from gasmon.archive import ARCHIVE_COLUMNS
from gasmon.settings import IngestSettings, QuerySettings, SweepSettings
from gasmon_local.template import Stack, load

ROOT = Path(__file__).resolve().parents[2]
RAW = load(ROOT / "template.yaml")
EXISTING = {
    "OpenSearchEndpoint": "https://search-seed-abc.ap-northeast-2.es.amazonaws.com",
    "OpenSearchDomainArn": "arn:aws:es:ap-northeast-2:123456789012:domain/seed-domain",
}


def stack(**overrides: str) -> Stack:
    return Stack(RAW, parameter_overrides=overrides, base_dir=ROOT)


def rule_verdict(parameters: dict[str, str]) -> bool | None:
    """None when the rule does not apply; else whether every assertion holds."""
    resolved = stack(**parameters)
    rule = RAW["Rules"]["ExistingDomainNeedsItsArn"]
    if not resolved.resolve(rule["RuleCondition"]):
        return None
    return all(resolved.resolve(item["Assert"]) for item in rule["Assertions"])


def test_an_endpoint_without_its_domain_arn_fails_the_rules_before_any_resource() -> None:
    # Given an existing domain's endpoint but the ARN left at its empty default
    # When CloudFormation evaluates the template's Rules
    verdict = rule_verdict({"OpenSearchEndpoint": EXISTING["OpenSearchEndpoint"]})
    # Then the assertion fails, with a message that names the parameter
    assert verdict is False
    assert "OpenSearchDomainArn" in RAW["Rules"]["ExistingDomainNeedsItsArn"]["Assertions"][0]["AssertDescription"]
    # ...and it passes with the ARN, and does not apply when the stack creates its own domain
    assert rule_verdict(EXISTING) is True
    assert rule_verdict({}) is None


def es_resources(resolved: Stack) -> list[str]:
    """Every es:* resource of every function policy and of the domain's access policy."""
    found: list[str] = []
    for logical_id in resolved.of_type("AWS::Serverless::Function"):
        for policy in resolved.properties(logical_id).get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(str(action).startswith("es:") for action in actions):
                    resources = statement["Resource"]
                    found += resources if isinstance(resources, list) else [resources]
    if resolved.active("ReadingsDomain"):
        for statement in resolved.properties("ReadingsDomain")["AccessPolicies"]["Statement"]:
            resources = statement["Resource"]
            found += resources if isinstance(resources, list) else [resources]
    return found


@pytest.mark.parametrize("parameters", [{}, EXISTING], ids=["own-domain", "existing-domain"])
def test_every_opensearch_permission_names_one_domain_in_every_branch(parameters: dict[str, str]) -> None:
    # Given either way of deploying (a new domain, or an existing one with its ARN)
    resources = es_resources(stack(**parameters))
    # Then every statement is scoped to that domain's gasmon paths (its indices, its templates, its
    # ISM policy), never the whole domain and never `/*` of nothing
    domain = parameters.get("OpenSearchDomainArn", "arn:aws:es:ap-northeast-2:123456789012:domain/gasmon-readings")
    gasmon_paths = ("gasdetect*", "_index_template/gasdetect", "_plugins/_ism/policies/gasdetect-")
    assert resources
    for resource in resources:
        assert resource.startswith(domain + "/"), resource
        assert resource.removeprefix(domain + "/").startswith(gasmon_paths), resource


def test_the_domain_arn_parameter_accepts_only_a_domain_arn_or_nothing() -> None:
    import re

    pattern = re.compile(RAW["Parameters"]["OpenSearchDomainArn"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch(EXISTING["OpenSearchDomainArn"])
    assert not pattern.fullmatch("arn:aws:es:ap-northeast-2:123456789012:domain/x/*")
    assert not pattern.fullmatch("*")


@pytest.mark.parametrize(("count", "replicas", "zones"), [("1", "0", None), ("2", "1", 2), ("3", "1", 3)])
def test_replicas_and_zones_follow_the_instance_count(count: str, replicas: str, zones: int | None) -> None:
    # Given a domain of `count` data nodes
    resolved = stack(OpenSearchInstanceCount=count)
    cluster = resolved.properties("ReadingsDomain")["ClusterConfig"]
    # Then one node keeps 0 replicas (green), more spread over as many zones with a replica
    assert cluster["InstanceCount"] == count
    assert resolved.functions()["IngestFunction"].environment["OPENSEARCH_REPLICAS"] == replicas
    assert cluster["ZoneAwarenessEnabled"] is (zones is not None)
    assert cluster.get("ZoneAwarenessConfig", {}).get("AvailabilityZoneCount") == zones


def test_the_domain_publishes_slow_and_error_logs_to_groups_it_may_write() -> None:
    resolved = stack()
    options = resolved.properties("ReadingsDomain")["LogPublishingOptions"]
    assert set(options) == {"INDEX_SLOW_LOGS", "SEARCH_SLOW_LOGS", "ES_APPLICATION_LOGS"}
    assert all(option["Enabled"] for option in options.values())
    policy = resolved.properties("DomainLogsResourcePolicy")["PolicyDocument"]
    for option in options.values():
        assert option["CloudWatchLogsLogGroupArn"] in policy
    assert "DomainLogsResourcePolicy" in RAW["Resources"]["ReadingsDomain"]["DependsOn"]


ALARMS = {
    "DomainFreeStorageAlarm": "FreeStorageSpace",
    "DomainWritesBlockedAlarm": "ClusterIndexWritesBlocked",
    "DomainStatusRedAlarm": "ClusterStatus.red",
    "Api5xxRateAlarm": "5XXError",
}


@pytest.mark.parametrize("parameters", [{}, EXISTING], ids=["own-domain", "existing-domain"])
def test_each_operator_alarm_watches_its_metric_and_tells_the_operator_topic(parameters: dict[str, str]) -> None:
    resolved = stack(**parameters)
    topic = resolved.ref("OperatorTopic")
    expected_domain = "seed-domain" if parameters else "gasmon-readings"
    for logical_id, metric in ALARMS.items():
        alarm = resolved.properties(logical_id)
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        if "Metrics" in alarm:  # the API's 5xx rate: 5xx over requests, as a percentage
            names = {query["MetricStat"]["Metric"]["MetricName"] for query in alarm["Metrics"] if "MetricStat" in query}
            assert names == {metric, "Count"}
            api_name = resolved.properties("GasmonApi")["Name"]
            dimensions = alarm["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]
            assert {"Name": "ApiName", "Value": api_name} in dimensions
        else:
            assert alarm["MetricName"] == metric
            assert {"Name": "DomainName", "Value": expected_domain} in alarm["Dimensions"]


def test_the_operator_email_subscription_follows_its_parameter_and_keeps_undelivered_mail() -> None:
    # Given no addresses, no e-mail subscription; given both, one each, with a dead-letter queue
    assert not [s for s in stack().subscriptions() if s.protocol == "email"]
    subscriptions = stack(OperatorEmail="ops@example.com", AlertEmail="a@example.com").subscriptions()
    emails = [s for s in subscriptions if s.protocol == "email"]
    assert {s.endpoint for s in emails} == {"ops@example.com", "a@example.com"}
    dead_letters = stack().get_att("NotificationDeadLetterQueue", "Arn")
    for subscription in emails:
        assert dead_letters in subscription.attributes["RedrivePolicy"]


def test_every_function_has_its_reserved_concurrency_from_a_parameter() -> None:
    for logical_id, resource in RAW["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        reserved = resource["Properties"].get("ReservedConcurrentExecutions")
        assert isinstance(reserved, dict) and reserved.get("Ref") in RAW["Parameters"], logical_id


def test_the_api_writes_access_logs_to_a_group_with_retention() -> None:
    api = RAW["Resources"]["GasmonApi"]["Properties"]
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert "$context.requestId" in api["AccessLogSetting"]["Format"]
    group = RAW["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_retention_days_reaches_ingest_query_and_the_sweep_as_a_setting_each_reads() -> None:
    functions = stack(RetentionDays="7").functions()
    for logical_id, settings in (
        ("IngestFunction", IngestSettings),
        ("QueryFunction", QuerySettings),
        ("SweepReadingsFunction", SweepSettings),
    ):
        assert functions[logical_id].environment["RETENTION_DAYS"] == "7"
        assert "retention_days" in settings.model_fields


def test_the_sweep_runs_hourly_and_keeps_what_failed() -> None:
    spec = stack().functions()["SweepReadingsFunction"]
    (schedule,) = spec.schedules
    assert schedule.expression == "rate(1 hour)" and schedule.enabled
    assert spec.async_config.on_failure == stack().get_att("SweepDeadLetterQueue", "Arn")


def test_the_archive_table_reads_what_ingest_writes_where_firehose_writes_it() -> None:
    resolved = stack()
    (stream,) = resolved.delivery_streams()
    table = resolved.properties("ArchiveTable")["TableInput"]
    # Columns are the archive rows' keys, in order, with their types
    columns = tuple((column["Name"], column["Type"]) for column in table["StorageDescriptor"]["Columns"])
    assert columns == ARCHIVE_COLUMNS
    # Partition projection on dt matches Firehose's prefix, in the same bucket, and both are gzip
    assert stream.prefix == "readings/dt=!{timestamp:yyyy-MM-dd}/"
    assert stream.compression == "GZIP"
    assert table["Parameters"]["storage.location.template"] == f"s3://{stream.bucket}/readings/dt=${{dt}}/"
    assert table["Parameters"]["projection.dt.format"] == "yyyy-MM-dd"
    assert table["Parameters"]["compressionType"] == "gzip"
    # Ingest may put records on that stream and nothing else
    statements = [s for p in resolved.properties("IngestFunction")["Policies"] for s in p["Statement"]]
    archive = [s for s in statements if "firehose" in str(s["Action"])]
    assert [(s["Action"], s["Resource"]) for s in archive] == [
        ("firehose:PutRecordBatch", resolved.get_att("ArchiveStream", "Arn"))
    ]
    assert resolved.functions()["IngestFunction"].environment["ARCHIVE_STREAM"] == stream.name


def test_the_archive_bucket_is_private_encrypted_tls_only_and_kept() -> None:
    bucket = RAW["Resources"]["ArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    blocks = bucket["Properties"]["PublicAccessBlockConfiguration"]
    assert all(blocks.values()) and len(blocks) == 4
    assert bucket["Properties"]["BucketEncryption"]
    (deny,) = RAW["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def suppressions() -> list[tuple[str, str, str, Any]]:
    found = []
    for logical_id, resource in RAW["Resources"].items():
        metadata = resource.get("Metadata") or {}
        for skip in (metadata.get("checkov") or {}).get("skip", []):
            found.append((logical_id, "checkov", skip["id"], skip.get("comment")))
        lint = metadata.get("cfn-lint") or {}
        reasons = lint.get("reasons") or {}
        for rule in (lint.get("config") or {}).get("ignore_checks", []):
            found.append((logical_id, "cfn-lint", rule, reasons.get(rule)))
    return found


def test_every_suppression_has_a_one_line_reason() -> None:
    found = suppressions()
    assert found  # checkov and cfn-lint run in `make iac`; this keeps their silences honest
    for logical_id, tool, rule, reason in found:
        assert isinstance(reason, str) and len(reason) > 20 and "\n" not in reason, (logical_id, tool, rule)


def test_no_check_is_silenced_for_the_whole_template() -> None:
    # Suppressions live on resources, where a reader sees them next to what they excuse
    assert "cfn-lint" not in (RAW.get("Metadata") or {})
    assert not (ROOT / ".checkov.yaml").exists() and not (ROOT / ".checkov.yml").exists()
