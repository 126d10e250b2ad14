"""Schemathesis against `gasmon-local`'s API: every GET route, all checks, no server error.

The spec is the one `make openapi` writes (built from the very handlers the stack runs); requests
go over HTTP through the local API gateway with the credentials a client needs. Schemathesis' own
runner (its CLI: its pytest plugin does not load under pytest 9) draws positive and negative cases,
at least 100 per operation, and runs every check on each answer: no 5xx, status codes, content
types, headers and bodies as the spec declares them, unsupported methods, missing headers.

A schema-valid request may still be a 422: a time outside the retention period or a cursor the
server never issued cannot be expressed in OpenAPI, so `positive_data_acceptance` accepts 422
beside 2xx (and every 422 must still match the documented ErrorBody).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gasmon_local.openapi import build_spec
from gasmon_local.process import StackProcess

EXAMPLES_PER_OPERATION = 100
CONFIG = f"""
seed = 13
[generation]
max-examples = {EXAMPLES_PER_OPERATION}
[checks]
positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""


def api_credentials(stack: StackProcess) -> dict[str, str]:
    """The headers a client of the query API sends (today the stack's API key): the one place
    this test knows how the gateway authenticates."""
    return {"x-api-key": str(stack.endpoints["api_key"])}


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis-stack")
    with StackProcess(data_dir, "--no-devices") as stack:
        yield stack


def test_every_get_route_answers_as_its_spec_says(api_stack: StackProcess, tmp_path: Path) -> None:
    # Given the API's spec, the GET routes in it, and a running stack
    spec = build_spec()
    routes = sorted(path for path, methods in spec["paths"].items() if "get" in methods)
    assert routes == ["/alarms", "/alerts", "/devices", "/series", "/warnings"]
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    headers = [f"--header={name}: {value}" for name, value in api_credentials(api_stack).items()]
    # When schemathesis tests every GET operation with all its checks
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={tmp_path / 'schemathesis.toml'}",
        "run",
        str(tmp_path / "openapi.json"),
        f"--url={api_stack.endpoints['api']}",
        "--include-method=GET",
        "--checks=all",
        f"--report-junit-path={tmp_path / 'junit.xml'}",
        "--report=junit",
        *headers,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    # Then it finds nothing: no server error, and every answer as documented
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    report = (tmp_path / "junit.xml").read_text()
    for route in routes:
        assert f"GET {route}" in report, (route, output[-3000:])
