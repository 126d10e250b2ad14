"""template.yaml's QueryFunction agrees with its handler: every route it serves is wired, every
variable is a setting it reads, and the alarm table is readable with Query only."""

from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from gasmon.settings import QuerySettings
from gasmon_local.functions import load_function_module

ROOT = Path(__file__).resolve().parents[2]


def query_function() -> dict[str, Any]:
    template, problems = decode_str((ROOT / "template.yaml").read_text())
    assert not problems, problems
    return dict(template["Resources"]["QueryFunction"]["Properties"])


def test_every_route_of_the_handler_is_an_api_event_and_no_other() -> None:
    app = load_function_module("functions/query_readings").app
    served = {(route.method, route.path) for route in app._static_routes}
    wired = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in query_function()["Events"].values()}
    assert ("GET", "/alarms") in wired
    assert wired == served


def test_every_environment_variable_is_a_setting_and_alarm_table_names_the_stack_table() -> None:
    variables = query_function()["Environment"]["Variables"]
    known = {name.upper() for name in QuerySettings.model_fields}
    assert set(variables) - {"POWERTOOLS_SERVICE_NAME"} <= known
    assert variables["ALARM_TABLE"] == {"Ref": "AlarmTable"}


def test_the_alarm_table_may_only_be_queried_with_its_indexes() -> None:
    statements = [s for policy in query_function()["Policies"] for s in policy["Statement"]]
    on_alarms = [s for s in statements if "AlarmTable" in str(s["Resource"])]
    assert len(on_alarms) == 1
    (statement,) = on_alarms
    assert statement["Action"] == "dynamodb:Query"
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["AlarmTable", "Arn"]},
        {"Fn::Sub": "${AlarmTable.Arn}/index/*"},
    ]
