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
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from gasmon_local.openapi import build_spec
from gasmon_local.process import StackProcess
from tests.e2e.conftest import WAIT, document, iso_time, provision

EXAMPLES_PER_OPERATION = 100
CONFIG = f"""
seed = 13
[generation]
max-examples = {EXAMPLES_PER_OPERATION}
[checks]
positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""


def api_credentials(stack: StackProcess) -> dict[str, str]:
    """The headers a client of the query API sends (the stack's viewer key): the one place this
    test knows how the gateway authenticates readers."""
    return {"x-api-key": str(stack.endpoints["viewer_key"])}


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis-stack")
    with StackProcess(data_dir, "--no-devices") as stack:
        yield stack


def test_bounds_and_cursors_hold_against_the_running_stack(api_stack: StackProcess) -> None:
    api, headers = api_stack.endpoints["api"], api_credentials(api_stack)
    now = datetime.now(UTC).replace(microsecond=0)
    # Given a Pi (provisioned, with its own key) posted NO2 over its threshold three times, the last one first
    device = {"x-api-key": provision(api_stack, "pi-b", "2")["api_key"]}
    for minutes in (1, 3, 2):
        body = document("pi-b", "2", now - timedelta(minutes=minutes), stamp=iso_time, no2=90 + minutes)
        assert requests.post(f"{api}/readings", json=body, headers=device, timeout=WAIT).status_code == 200
    # When the warnings are paged one at a time
    first = requests.get(f"{api}/warnings", params={"limit": "1"}, headers=headers, timeout=WAIT).json()
    cursor = first["next_cursor"]
    second = requests.get(f"{api}/warnings", params={"limit": "1", "cursor": cursor}, headers=headers, timeout=WAIT)
    # Then the signed cursor continues the list, and an edited one is a 422 naming it
    assert [w["value"] for w in first["warnings"] + second.json()["warnings"]] == [91, 92]
    payload, _, signature = cursor.partition(".")
    edited = requests.get(
        f"{api}/warnings", params={"cursor": f"{payload}.{signature[::-1]}"}, headers=headers, timeout=WAIT
    )
    assert edited.status_code == 422 and edited.json()["details"][0]["path"] == "cursor"
    # And the device table shows the newest reading, though it arrived first
    [pi_b] = requests.get(f"{api}/devices", headers=headers, timeout=WAIT).json()["devices"]
    assert (pi_b["device"], pi_b["values"]["no2"]["value"]) == ("pi-b", 91)
    # And the alarm history since year 1 is refused at once, naming `since`
    started = time.monotonic()
    answer = requests.get(f"{api}/alarms", params={"since": "0001-01-01T00:00:00Z"}, headers=headers, timeout=WAIT)
    assert answer.status_code == 422 and answer.json()["details"][0]["path"] == "since"
    assert time.monotonic() - started < WAIT


def test_every_get_route_answers_as_its_spec_says(api_stack: StackProcess, tmp_path: Path) -> None:
    # Given the API's spec, the GET routes in it, and a running stack
    spec = build_spec()
    routes = sorted(path for path, methods in spec["paths"].items() if "get" in methods)
    assert routes == ["/alarms", "/alerts", "/config", "/devices", "/series", "/warnings"]
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
    # And it tried at least the promised number of cases per operation
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) >= EXAMPLES_PER_OPERATION * len(routes), output[-3000:]
