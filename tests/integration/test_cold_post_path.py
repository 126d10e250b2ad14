"""A cold POST as deployed loads no SDK client: the pin behind `make bench`'s cold-start row.

One fresh interpreter imports the ingest function as Lambda does and answers one seed document
with template.yaml's environment (OpenSearch store, alarm table, rate limiter, archive stream),
against the spec-checked fake OpenSearch (every request validated against the official API
specification) and moto's server. The interpreter has opensearch-py, requests, urllib3, boto3 and
the X-Ray SDK installed; the test asserts the POST was stored and that none of them was loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.bench_cold import ingest_environment, ingest_stack, lambda_environment, seed_event
from gasmon_local import aws
from gasmon_local.functions import ROOT
from tests.opensearch_fake import FakeCluster, running_cluster

FUNCTION = ROOT / "functions" / "ingest_readings"
# Clients the hot path no longer needs; none may be imported by a cold POST that moves no alarm.
NOT_ON_THE_COLD_PATH = {
    "opensearchpy",
    "requests",
    "urllib3",
    "boto3",
    "botocore.session",
    "botocore.client",
    "botocore.auth",
    "botocore.credentials",
    "aws_xray_sdk.core",
    "zipfile",  # importlib.metadata's, deferred by gasmon/__init__ until something reads it
    "gasmon.presence_models",  # the presence functions' models (the rate limiter shares a module with them)
}

COLD_POST = """
import json, sys
sys.path[:0] = sys.argv[1:]
import app
class Context:
    function_name = "gasmon-ingest"; memory_limit_in_mb = 512; aws_request_id = "cold-path"
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-ingest"
    def get_remaining_time_in_millis(self): return 15000
answer = app.lambda_handler(json.loads(sys.stdin.read()), Context())
print(json.dumps({"answer": answer, "modules": sorted(sys.modules)}))
"""


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    yield from running_cluster()


@pytest.fixture
def moto_url() -> Iterator[str]:
    server = aws.MotoServer(port=0)
    try:
        yield server.start()
    finally:
        server.stop()


def cold_post(cluster_url: str, moto_url: str) -> dict[str, Any]:
    stack_name = f"cold{uuid.uuid4().hex[:6]}"
    variables = ingest_environment(cluster_url, moto_url, stack_name)
    problems = aws.create_resources(ingest_stack(cluster_url, stack_name), moto_url)
    assert not [p for p in problems if "table" in p or "stream" in p], problems
    environment = lambda_environment(FUNCTION, variables, moto_url)
    event = seed_event(datetime.now(UTC))
    done = subprocess.run(
        [sys.executable, "-c", COLD_POST, str(FUNCTION), str(ROOT / "layers" / "gasmon")],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=environment,
        cwd=FUNCTION,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_cold_post_as_deployed_is_stored_without_opensearch_py_or_a_botocore_client(
    cluster: tuple[FakeCluster, str], moto_url: str
) -> None:
    state, url = cluster
    # When a fresh interpreter answers one seed document with the deployed configuration
    result = cold_post(url, moto_url)
    # Then the document was accepted: its four readings in OpenSearch, through the spec-checked fake
    answer = result["answer"]
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["accepted"] == 4
    assert state.count() == 4 and len(state.bulk_requests()) == 1
    # And every request was signed, for the domain's region and service
    scopes = {(r.authorization or "").split(", ")[0].split("/", 2)[-1] for r in state.requests}
    assert scopes == {"ap-northeast-2/es/aws4_request"}, scopes
    # And no SDK client, opensearch-py or HTTP library was loaded to do it
    loaded = set(result["modules"])
    assert "gasmon.adapters.signed_http" in loaded  # the check looks at the right interpreter
    assert not loaded & NOT_ON_THE_COLD_PATH
