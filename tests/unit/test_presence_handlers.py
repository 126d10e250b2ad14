"""The two presence Lambda handlers with in-memory ports: parsing, dropping, partial batches."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from presence_fakes import FakeLambdaContext, FakePorts, at, load_event

from gasmon.observability import metrics
from gasmon_local.functions import load_handler

record_presence = load_handler("functions/record_presence")
check_presence = load_handler("functions/check_presence")


@pytest.fixture(autouse=True)
def metrics_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # template.yaml's Globals set POWERTOOLS_METRICS_NAMESPACE in AWS.
    monkeypatch.setattr(metrics, "namespace", "GasmonTest")
    yield


def run_record(fake: FakePorts, event: Any, seconds: float = 0.2) -> dict[str, Any]:
    ports = fake.ports()
    return record_presence(  # type: ignore[no-any-return]
        event,
        FakeLambdaContext(),
        repository=ports.repository,
        scheduler=ports.scheduler,
        notifier=ports.notifier,
        directory=ports.directory,
        clock=lambda: at(seconds),
    )


def run_check(fake: FakePorts, event: Any, seconds: float = 61) -> dict[str, Any]:
    ports = fake.ports()
    return check_presence(  # type: ignore[no-any-return]
        event,
        FakeLambdaContext(),
        repository=ports.repository,
        scheduler=ports.scheduler,
        notifier=ports.notifier,
        directory=ports.directory,
        clock=lambda: at(seconds),
    )


def sqs_event(*bodies: str) -> dict[str, Any]:
    template = load_event("presence_check_sqs.json")["Records"][0]
    return {"Records": [template | {"messageId": f"msg-{i}", "body": body} for i, body in enumerate(bodies)]}


@pytest.mark.parametrize(
    "event", [{}, {"clientId": "RPI"}, {"clientId": "RPI", "timestamp": "soon", "eventType": "connected"}]
)
def test_malformed_lifecycle_event_is_dropped_without_raising(event: dict[str, Any]) -> None:
    # Given an event that is not a lifecycle event
    fake = FakePorts()
    # When the record function gets it
    answer = run_record(fake, event)
    # Then it answers "dropped" (no exception, so no retry loop) and touches nothing
    assert (answer["outcome"], answer["code"]) == ("dropped", "malformed_event")
    assert fake.repository.states == {}


def test_lost_connection_event_file_schedules_a_check() -> None:
    fake = FakePorts()
    answer = run_record(fake, load_event("presence_disconnected_lost.json"))
    assert (answer["outcome"], answer["delay_seconds"]) == ("check_scheduled", 60)


def test_clean_disconnect_event_file_is_recorded_quietly() -> None:
    fake = FakePorts()
    answer = run_record(fake, load_event("presence_disconnected_clean.json"))
    assert (answer["outcome"], answer["disconnect_kind"]) == ("recorded", "clean")


def test_duplicate_pair_file_schedules_the_same_check_twice_but_records_once() -> None:
    # Given the same disconnect delivered twice
    fake = FakePorts()
    first, second = load_event("presence_duplicate_pair.json")
    # When both are handled
    answers = [run_record(fake, first), run_record(fake, second)]
    # Then the second did not move the state, and both checks name the same episode
    assert [a["applied"] for a in answers] == [True, False]
    assert len({check.episode_id for check, _ in fake.scheduler.scheduled}) == 1


def test_out_of_order_pair_file_leaves_the_device_disconnected() -> None:
    # Given a disconnect that arrives before the connect of its own session
    fake = FakePorts()
    for event in load_event("presence_out_of_order_pair.json"):
        run_record(fake, event)
    # Then the device is disconnected, and the session's start is still known
    state = fake.repository.states["RPI"]
    assert state.status == "disconnected"
    assert state.connected_at is not None


def test_sample_sqs_event_sends_the_alert() -> None:
    # Given the device from the sample events lost its connection
    fake = FakePorts()
    run_record(fake, load_event("presence_connected.json"), -8000)
    run_record(fake, load_event("presence_disconnected_lost.json"))
    # When the sample SQS event is delivered after the grace
    answer = run_check(fake, load_event("presence_check_sqs.json"))
    # Then no record failed and one alert went out
    assert answer == {"batchItemFailures": []}
    assert len(fake.notifier.sent) == 1


def test_failed_alert_is_reported_as_a_batch_item_failure() -> None:
    # Given SNS failing
    fake = FakePorts()
    run_record(fake, load_event("presence_disconnected_lost.json"))
    fake.notifier.failures_left = 1
    # When the check runs
    answer = run_check(fake, load_event("presence_check_sqs.json"))
    # Then only that message is handed back to SQS
    assert answer == {"batchItemFailures": [{"itemIdentifier": "3f0c1d9e-6a52-4f4e-9b1a-2d7c8e0f4a11"}]}


def test_malformed_check_is_dropped_while_the_rest_of_the_batch_runs() -> None:
    # Given a batch with a broken message and a real check
    fake = FakePorts()
    run_record(fake, load_event("presence_disconnected_lost.json"))
    good = load_event("presence_check_sqs.json")["Records"][0]["body"]
    # When the batch is handled
    answer = run_check(fake, sqs_event("not json", json.dumps({"client_id": "RPI"}), good))
    # Then nothing is handed back for retry and the real check still alerted
    assert answer == {"batchItemFailures": []}
    assert len(fake.notifier.sent) == 1
