"""Every request the OpenSearch adapter sends is allowed by the template's IAM, in every deployment.

The adapter runs for real against the spec-checked fake cluster (tests/opensearch_fake.py) as
each function uses it; each recorded request becomes what Amazon OpenSearch Service authorises:
action `es:ESHttp<Method>` on `arn:<partition>:es:<region>:<account>:domain/<name><path>`. A
small IAM matcher checks it against the function's role policy and, when the stack creates the
domain, the domain's access policy, after resolving the template's intrinsics for each parameter
branch: a domain created here, an existing domain with its ARN, and an existing domain without
it (which the template's `Rules` must refuse before any resource is created: its statements
would name `/*`, which is not an ARN).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from cfnlint.decode import decode_str

from gasmon.adapters.opensearch_store import OpenSearchReadingStore
from gasmon.models import SeriesQuery
from tests.integration.test_sqlite_store import make_readings
from tests.opensearch_fake import FakeCluster, Recorded, running_cluster

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "ap-northeast-2"
EXISTING_ARN = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/seed-readings"
BRANCHES = {
    "domain created by the stack": {"OpenSearchEndpoint": ""},
    "existing domain with its ARN": {
        "OpenSearchEndpoint": "https://search-seed-readings-abc.ap-northeast-2.es.amazonaws.com",
        "OpenSearchDomainArn": EXISTING_ARN,
    },
    "existing domain without its ARN": {
        "OpenSearchEndpoint": "https://search-seed-readings-abc.ap-northeast-2.es.amazonaws.com",
        "OpenSearchDomainArn": "",
    },
}
OPENSEARCH_FUNCTIONS = ("IngestFunction", "QueryFunction", "RecordPresenceFunction", "CheckPresenceFunction")


def load_template() -> dict[str, Any]:
    template, problems = decode_str((ROOT / "template.yaml").read_text())
    assert not problems, problems
    return dict(template)


class Resolver:
    """The template's intrinsic functions, evaluated for one set of parameter values."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str]) -> None:
        self.template = template
        self.refs: dict[str, Any] = {
            name: overrides.get(name, spec.get("Default", "")) for name, spec in template["Parameters"].items()
        }
        self.refs |= {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        self.conditions = {name: self.value(expr) for name, expr in template.get("Conditions", {}).items()}

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict) or len(node) != 1:
            return {key: self.value(item) for key, item in node.items()} if isinstance(node, dict) else node
        ((function, argument),) = node.items()
        if function == "Ref":
            return self.refs.get(argument, f"<{argument}>")
        if function == "Fn::GetAtt":
            name = argument[0] if isinstance(argument, list) else argument.split(".")[0]
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        if function == "Fn::Sub":
            text, extra = (argument, {}) if isinstance(argument, str) else (argument[0], self.value(argument[1]))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(extra.get(m[1], self._sub(m[1]))), text)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.value(when_true if self.conditions[name] else when_false)
        if function == "Fn::Equals":
            left, right = self.value(argument)
            return left == right
        if function == "Fn::Not":
            return not self.value(argument[0])
        if function == "Fn::And":
            return all(self.value(argument))
        if function == "Fn::Or":
            return any(self.value(argument))
        if function == "Condition":
            return self.conditions[argument]
        return {function: self.value(argument)}

    def _sub(self, name: str) -> str:
        if "." in name:
            return str(self.value({"Fn::GetAtt": name}))
        return str(self.refs.get(name, f"<{name}>"))

    def rule_failures(self) -> list[str]:
        """The `Rules` assertions these parameters break (CloudFormation stops before creating anything)."""
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            failures += [a.get("AssertDescription", "") for a in rule["Assertions"] if not self.value(a["Assert"])]
        return failures


def statements(policy: Any) -> list[dict[str, Any]]:
    found = policy.get("Statement", []) if isinstance(policy, dict) else []
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allows(policy_statements: list[dict[str, Any]], action: str, resource: str, principal: str | None = None) -> bool:
    """IAM's answer for one request: an Allow naming the action and a resource pattern that
    matches (`*` any run of characters, `?` one), and no Deny that does."""

    def matches(statement: dict[str, Any]) -> bool:
        if principal is not None and principal not in as_list(statement.get("Principal", {}).get("AWS", [])):
            return False
        actions = as_list(statement.get("Action", []))
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in actions):
            return False
        return any(fnmatch.fnmatchcase(resource, pattern) for pattern in as_list(statement.get("Resource", [])))

    if any(matches(s) for s in policy_statements if s.get("Effect") == "Deny"):
        return False
    return any(matches(s) for s in policy_statements if s.get("Effect") == "Allow")


def role_statements(resolver: Resolver, function: str) -> list[dict[str, Any]]:
    """The statements of a SAM function's generated role that concern OpenSearch."""
    policies = resolver.value(resolver.template["Resources"][function]["Properties"].get("Policies", []))
    found = [s for policy in policies for s in statements(policy)]
    return [s for s in found if any(str(a).startswith("es:") for a in as_list(s.get("Action", [])))]


def domain_arn(resolver: Resolver) -> str:
    if resolver.conditions["CreateOpenSearchDomain"]:
        return f"arn:aws:es:{REGION}:{ACCOUNT}:domain/{resolver.refs['OpenSearchDomainName']}"
    return str(resolver.refs["OpenSearchDomainArn"])


def authorisation_problems(resolver: Resolver, function: str, requests: list[Recorded]) -> list[str]:
    problems = []
    role = role_statements(resolver, function)
    for statement in role:
        for resource in as_list(statement["Resource"]):
            if not re.fullmatch(r"arn:aws:es:[a-z0-9-]+:\d{12}:domain/[a-z][a-z0-9-]{2,27}/.+", resource):
                problems.append(f"{function}: {resource!r} is not an OpenSearch domain ARN (IAM refuses the policy)")
    domain = resolver.value(resolver.template["Resources"]["ReadingsDomain"]["Properties"]["AccessPolicies"])
    principal = f"arn:aws:iam::{ACCOUNT}:role/{function}Role"
    for request in requests:
        action = f"es:ESHttp{request.method.capitalize()}"
        resource = domain_arn(resolver) + unquote(urlsplit(request.url).path)
        if not allows(role, action, resource):
            problems.append(f"{function}'s role does not allow {action} on {resource}")
        if resolver.conditions["CreateOpenSearchDomain"] and not allows(
            statements(domain), action, resource, principal
        ):
            problems.append(f"the domain's access policy does not allow {function} {action} on {resource}")
    return problems


# ---- what each function sends, recorded behind the real client ----


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    yield from running_cluster()


def sent_by(function: str, url: str, state: FakeCluster) -> list[Recorded]:
    """Run the adapter as `function` does and return what reached the cluster."""
    start = len(state.requests)
    store = OpenSearchReadingStore(url, sign_requests=False, sleep=lambda _: None)
    if function == "IngestFunction":
        store.put_readings(make_readings(3))  # setup (mapping probe, ISM policy, template) + bulk
        OpenSearchReadingStore(url, sign_requests=False, retention_days=30).put_readings(make_readings(3))
    elif function == "QueryFunction":
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store.bucket_stats(SeriesQuery(gas="no2", start=t0, end=t0 + timedelta(hours=1), interval_seconds=60))
        store.latest_by_device(None, 10)
        store.readings_at_or_above({"no2": 88.0}, t0, 10)
    else:
        store.latest_reading(["pi-1", "1"])
    return state.requests[start:]


@pytest.mark.parametrize("branch", list(BRANCHES))
def test_every_request_each_function_sends_is_allowed_in_every_deployment(cluster: Any, branch: str) -> None:
    # Given the template resolved for this deployment
    state, url = cluster
    resolver = Resolver(load_template(), BRANCHES[branch])
    if resolver.rule_failures():
        # Then a deployment the Rules refuse is refused before any resource exists ...
        assert branch == "existing domain without its ARN", resolver.rule_failures()
        assert "OpenSearchDomainArn" in resolver.rule_failures()[0]
        return
    # When each function does what it does against OpenSearch
    problems = []
    for function in OPENSEARCH_FUNCTIONS:
        requests = sent_by(function, url, state)
        assert requests, function
        # Then IAM lets every one of its requests through, and nothing else is needed
        problems += authorisation_problems(resolver, function, requests)
    assert not problems, "\n".join(problems)


def test_without_the_rules_an_existing_domain_without_its_arn_would_fail_to_deploy(cluster: Any) -> None:
    # Given the template without its Rules, deployed against an existing domain without its ARN
    state, url = cluster
    template = load_template()
    template.pop("Rules", None)
    resolver = Resolver(template, BRANCHES["existing domain without its ARN"])
    # When ingest's requests are checked
    problems = authorisation_problems(resolver, "IngestFunction", sent_by("IngestFunction", url, state))
    # Then the matcher reports the policy IAM would refuse (resource "/gasdetect*", not an ARN)
    assert any("is not an OpenSearch domain ARN" in p for p in problems)


def test_the_query_role_may_search_gasmons_indices_and_nothing_else() -> None:
    # Given the query function's role in a stack that creates its domain
    resolver = Resolver(load_template(), BRANCHES["domain created by the stack"])
    role = role_statements(resolver, "QueryFunction")
    domain = domain_arn(resolver)
    # Then it may search gasmon's indices, and may not write, delete or read another index
    assert allows(role, "es:ESHttpPost", f"{domain}/gasdetect,gasdetect-2*/_search")
    assert not allows(role, "es:ESHttpPost", f"{domain}/gasdetect-2026.01.01/_bulk")
    assert not allows(role, "es:ESHttpDelete", f"{domain}/gasdetect-2026.01.01")
    assert not allows(role, "es:ESHttpPost", f"{domain}/other-index/_search")
    ingest = role_statements(resolver, "IngestFunction")
    assert allows(ingest, "es:ESHttpPost", f"{domain}/gasdetect-2026.01.01/_bulk")
    assert not allows(ingest, "es:ESHttpPost", f"{domain}/_bulk")  # bulk names its index
    assert not allows(ingest, "es:ESHttpPut", f"{domain}/_index_template/other")
