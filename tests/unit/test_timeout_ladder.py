"""The timeout ladder: every client's worst case plus the fallback margin fits its function.

Reads each function's Timeout from template.yaml and each client's timeouts and retries from
`gasmon.adapters.timeouts.CLIENT_BUDGETS` (the one place the adapters take them from).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gasmon.adapters.timeouts import CLIENT_BUDGETS, FALLBACK_MARGIN_SECONDS, FUNCTION_CLIENTS
from gasmon_local.template import load

ROOT = Path(__file__).resolve().parents[2]


def function_timeouts() -> dict[str, float]:
    template = load(ROOT / "template.yaml")
    default = float(template["Globals"]["Function"].get("Timeout", 3))
    return {
        name: float(resource["Properties"].get("Timeout", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@pytest.mark.parametrize("function", sorted(FUNCTION_CLIENTS))
def test_every_client_of_a_function_fits_inside_its_timeout_with_room_for_the_fallback(function: str) -> None:
    timeouts = function_timeouts()
    assert function in timeouts, f"{function} is not a function of template.yaml"
    for client in FUNCTION_CLIENTS[function]:
        worst = CLIENT_BUDGETS[client].worst_case_seconds
        assert worst + FALLBACK_MARGIN_SECONDS <= timeouts[function], (
            f"{function}: {client} may take {worst:g} s, plus {FALLBACK_MARGIN_SECONDS:g} s for the fallback, "
            f"over the {timeouts[function]:g} s timeout"
        )


# Functions that call no outside system (the dashboard serves files from its own folder).
NO_CLIENTS = {"DashboardFunction"}


def test_every_function_of_the_template_is_on_the_ladder() -> None:
    # A new function (or one renamed) must say which clients it uses, or that it uses none
    on_ladder = set(FUNCTION_CLIENTS)
    assert on_ladder | NO_CLIENTS == set(function_timeouts())
    assert not on_ladder & NO_CLIENTS


def test_no_function_behind_the_api_outlives_api_gateways_integration_timeout() -> None:
    # API Gateway (REST) answers 504 at 29 s, whatever the function is still doing
    for function in ("IngestFunction", "QueryFunction", "DashboardFunction"):
        assert function_timeouts()[function] < 29, function
