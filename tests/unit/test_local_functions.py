"""Invoking functions in-process, each with its own environment (gasmon_local.functions)."""

import json
import os
import time
from pathlib import Path

import pytest

from gasmon_local.functions import FunctionNotFoundError, FunctionRuntime, Isolation
from gasmon_local.template import AsyncConfig, FunctionSpec
from tests.local_functions import function_spec

SETTINGS_AT_COLD_START = """
    import os

    COLD = os.environ.get("COLOUR")  # read at import, like a module-level Logger

    def lambda_handler(event, context):
        return {"cold": COLD, "now": os.environ.get("COLOUR"), "name": context.function_name,
                "lambda_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}
"""
NAMED_SERVICE = """
    from gasmon.observability import logger, metrics

    def lambda_handler(event, context):
        return {"logger": logger.get_current_keys()["service"], "metrics": metrics.service}
"""
FLAKY = """
    from pathlib import Path

    def lambda_handler(event, context):
        marker = Path(event["marker"])
        attempts = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(attempts))
        if attempts < 2:
            raise RuntimeError("first attempt fails")
        return attempts
"""


def function(tmp_path: Path, logical_id: str, source: str, config: AsyncConfig | None = None) -> FunctionSpec:
    return function_spec(tmp_path, logical_id, source, timeout=3, async_config=config or AsyncConfig())


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_each_function_sees_its_own_environment_at_cold_start_and_later(tmp_path: Path, isolation: Isolation) -> None:
    # Given two functions with different values for the same variable
    red, blue = function(tmp_path, "Red", SETTINGS_AT_COLD_START), function(tmp_path, "Blue", SETTINGS_AT_COLD_START)
    runtime = FunctionRuntime(
        {"Red": red, "Blue": blue}, {"Red": {"COLOUR": "red"}, "Blue": {"COLOUR": "blue"}}, isolation=isolation
    )
    # When both are invoked, twice, interleaved
    results = [runtime.invoke(name, {}) for name in ("Red", "Blue", "Red", "Blue")]
    runtime.close()
    # Then each one reads its own value, at import and at every invocation
    assert [(r["cold"], r["now"]) for r in results] == [("red", "red"), ("blue", "blue")] * 2
    assert results[0]["name"] == results[0]["lambda_name"] == "gasmon-Red"
    # And the process environment is left as it was
    assert "COLOUR" not in os.environ


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_the_layers_logger_and_metrics_name_the_invoked_function(tmp_path: Path, isolation: Isolation) -> None:
    # Given two functions of the same layer, each with its own POWERTOOLS_SERVICE_NAME
    ingest, presence = function(tmp_path, "Ingest", NAMED_SERVICE), function(tmp_path, "Presence", NAMED_SERVICE)
    runtime = FunctionRuntime(
        {"Ingest": ingest, "Presence": presence},
        {"Ingest": {"POWERTOOLS_SERVICE_NAME": "ingest"}, "Presence": {"POWERTOOLS_SERVICE_NAME": "presence"}},
        isolation=isolation,
    )
    # When they are invoked in turn (inline: one Logger and Metrics object shared in this process;
    # process: each environment its own)
    results = [runtime.invoke(name, {}) for name in ("Ingest", "Presence", "Ingest")]
    runtime.close()
    # Then each invocation logs and counts under its own function's service, as in AWS
    assert [r["logger"] for r in results] == ["ingest", "presence", "ingest"]
    assert [r["metrics"] for r in results] == ["ingest", "presence", "ingest"]


def test_functions_are_found_by_logical_id_name_or_arn(tmp_path: Path) -> None:
    spec = function(tmp_path, "Finder", SETTINGS_AT_COLD_START)
    runtime = FunctionRuntime({"Finder": spec}, {})
    assert runtime.spec("gasmon-Finder") is runtime.spec(spec.arn + ":live") is spec
    with pytest.raises(FunctionNotFoundError):
        runtime.spec("arn:aws:lambda:ap-northeast-2:123456789012:function:nope")


def test_event_invocations_are_retried_after_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a function that fails on its first attempt
    monkeypatch.setattr("gasmon_local.functions.ASYNC_RETRY_DELAYS", (0.05, 0.05))
    runtime = FunctionRuntime({"Flaky": function(tmp_path, "Flaky", FLAKY)}, {})
    marker = tmp_path / "attempts"
    # When it is invoked asynchronously, Then Lambda-style retry runs it again
    runtime.invoke_async("Flaky", {"marker": str(marker)}, "test")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (marker.exists() and marker.read_text() == "2"):
        time.sleep(0.05)
    runtime.close()
    assert marker.read_text() == "2"


ALWAYS_FAILS = """
    def lambda_handler(event, context):
        raise ValueError("cannot handle " + event["kind"])
"""


def test_exhausted_retries_go_to_the_on_failure_destination_and_dead_letter_queue(tmp_path: Path) -> None:
    # Given a function with no retries, an OnFailure destination and a dead-letter queue
    config = AsyncConfig(max_retry_attempts=0, on_failure="arn:aws:sqs:r:1:failures", dead_letter="arn:aws:sns:r:1:dlq")
    sent: list[tuple[str, str]] = []
    spec = function(tmp_path, "Failing", ALWAYS_FAILS, config)
    runtime = FunctionRuntime({"Failing": spec}, {}, deliver=lambda arn, body: sent.append((arn, body)))
    # When an event invocation fails
    runtime.invoke_async("Failing", {"kind": "odd"}, "test")
    runtime.drain()
    runtime.close()
    # Then Lambda's failure record goes to the destination and the event itself to the DLQ
    destinations = dict(sent)
    record = json.loads(destinations["arn:aws:sqs:r:1:failures"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestContext"]["functionArn"] == spec.arn + ":$LATEST"
    assert record["requestPayload"] == {"kind": "odd"}
    assert record["responsePayload"]["errorMessage"] == "cannot handle odd"
    assert json.loads(destinations["arn:aws:sns:r:1:dlq"]) == {"kind": "odd"}
