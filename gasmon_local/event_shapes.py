"""What event a function expects, from its template events, and whether a given event has that shape.

`make invoke` checks the event before invoking, so handing the ingest function a lifecycle event
(or an SQS function an API request) is one line naming what was expected instead of a traceback
from deep inside the handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gasmon_local.template import FunctionSpec

SHAPES: dict[str, str] = {
    "api": "an API Gateway proxy event (an object with httpMethod and path, e.g. events/ingest_seed_document.json)",
    "sqs": "an SQS event (an object with Records from aws:sqs, e.g. events/presence_check_sqs.json)",
    "sns": "an SNS event (an object with Records from aws:sns)",
    "schedule": "a scheduled EventBridge event (an object with source aws.events)",
    "iot": "an IoT rule's message (a JSON object such as events/presence_disconnected_lost.json, "
    "or an array of them, invoked in order)",
}


def expected_kinds(spec: FunctionSpec, rule_target: bool = False) -> list[str]:
    """The event kinds a function's template events (and topic rules naming it) deliver, in a fixed order."""
    kinds = []
    if spec.api_routes:
        kinds.append("api")
    if spec.sqs_sources:
        kinds.append("sqs")
    if spec.sns_sources:
        kinds.append("sns")
    if spec.schedules:
        kinds.append("schedule")
    if spec.iot_rules or rule_target:
        kinds.append("iot")
    return kinds


def kind_of(event: Any) -> str | None:
    """The kind of one event object, or None when it looks like none of them."""
    if not isinstance(event, Mapping):
        return None
    if "httpMethod" in event and ("path" in event or "resource" in event):
        return "api"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        source = str(records[0].get("eventSource") or records[0].get("EventSource") or "")
        return {"aws:sqs": "sqs", "aws:sns": "sns"}.get(source)
    if event.get("source") == "aws.events":
        return "schedule"
    return "iot"  # a rule's SELECT makes any JSON object


def split_events(event: Any, spec: FunctionSpec, rule_target: bool = False) -> tuple[list[Any], str | None]:
    """The invocations one event file stands for, or a one-line reason it does not fit the function.

    An array is a sequence of rule messages (the sample "pair" events), invoked one after another
    as IoT Core would deliver them; everything else is one invocation. `rule_target`: an
    `AWS::IoT::TopicRule` of the template invokes this function.
    """
    kinds = expected_kinds(spec, rule_target)
    events = list(event) if isinstance(event, list) and "iot" in kinds else [event]
    if not kinds:
        return events, None  # no event sources in the template: any payload, as a direct Invoke
    for item in events:
        kind = kind_of(item)
        if kind is None or kind not in kinds:
            what = " or ".join(SHAPES[k] for k in kinds)
            got = f"a {kind} event" if kind else f"a JSON {type(item).__name__}"
            return [], f"{spec.logical_id} expects {what}; this file holds {got}"
    return events, None
