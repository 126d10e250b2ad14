"""`make invoke` checks an event's shape against the function's template events before invoking."""

import json

from gasmon_local.event_shapes import kind_of, split_events
from gasmon_local.functions import ROOT
from gasmon_local.template import REGION, Stack, StackContext

STACK = Stack.from_file(ROOT / "template.yaml", StackContext(aws_endpoint="http://127.0.0.1:9", region=REGION))


def event(name: str) -> object:
    return json.loads((ROOT / "events" / name).read_text())


def test_each_sample_event_is_of_the_kind_its_name_says() -> None:
    assert kind_of(event("ingest_seed_document.json")) == "api"
    assert kind_of(event("presence_check_sqs.json")) == "sqs"
    assert kind_of(event("presence_disconnected_lost.json")) == "iot"
    assert kind_of([1, 2]) is None


def test_the_ingest_function_refuses_an_sqs_event_naming_the_api_event_it_expects() -> None:
    # Given the ingest function (API events only)
    spec = STACK.functions()["IngestFunction"]
    # When it is handed the presence check queue's event
    events, problem = split_events(event("presence_check_sqs.json"), spec)
    # Then nothing is invoked and the reason names both shapes
    assert events == []
    assert problem is not None
    assert "API Gateway proxy event" in problem and "sqs event" in problem


def test_a_pair_for_a_rule_target_is_two_invocations_in_order() -> None:
    spec = STACK.functions()["RecordPresenceFunction"]
    pair = event("presence_out_of_order_pair.json")
    events, problem = split_events(pair, spec, rule_target=True)
    assert problem is None
    assert events == pair and len(events) == 2


def test_an_array_is_refused_by_a_function_no_rule_invokes() -> None:
    spec = STACK.functions()["IngestFunction"]
    events, problem = split_events([event("ingest_seed_document.json")], spec)
    assert events == [] and problem is not None and "JSON list" in problem
