"""`rate(...)` schedules run locally (gasmon_local.schedules)."""

import pytest

from gasmon_local.schedules import rate_seconds, scheduled_event
from gasmon_local.template import ScheduleSpec


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 3 * * ? *)", "rate(5 fortnights)", "rate(minutes)"])
def test_other_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        rate_seconds(expression)


def test_a_schedule_without_input_sends_eventbridges_scheduled_event() -> None:
    event = scheduled_event(ScheduleSpec("Fn", "FnTick", "rate(1 hour)"), "ap-northeast-2", "123456789012")
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == ["arn:aws:events:ap-northeast-2:123456789012:rule/FnTick"]


def test_a_schedule_with_input_sends_the_input() -> None:
    spec = ScheduleSpec("Fn", "FnTick", "rate(1 hour)", input='{"heartbeat": true}')
    assert scheduled_event(spec, "ap-northeast-2", "123456789012") == {"heartbeat": True}
