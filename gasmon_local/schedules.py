"""`Schedule` events with a `rate(...)` expression, run locally on a timer.

EventBridge invokes the function asynchronously with a "Scheduled Event" (or the event's `Input`)
every period; the first run comes one period after start, as with a new EventBridge rule.
`cron(...)` expressions are reported as not wired rather than approximated.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from gasmon_local.template import ScheduleSpec

log = logging.getLogger("schedule")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """`rate(5 minutes)` -> 300.0; ValueError for anything else."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"not a rate expression: {expression!r}")
    return int(match.group(1)) * _SECONDS[match.group(2).rstrip("s")]


def scheduled_event(schedule: ScheduleSpec, region: str, account_id: str) -> Any:
    """What EventBridge sends: the schedule's Input if it has one, else a Scheduled Event."""
    if schedule.input is not None:
        return json.loads(schedule.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{schedule.name}"],
        "detail": {},
    }


def start_schedules(
    schedules: list[ScheduleSpec],
    invoke_async: Callable[[str, Any, str], None],
    region: str,
    account_id: str,
    stop: threading.Event,
) -> None:
    """One timer thread per enabled rate schedule, until `stop` is set."""
    for schedule in schedules:
        if not schedule.enabled:
            continue
        period = rate_seconds(schedule.expression)

        def tick(schedule: ScheduleSpec = schedule, period: float = period) -> None:
            while not stop.wait(period):
                invoke_async(
                    schedule.function, scheduled_event(schedule, region, account_id), f"schedule {schedule.name}"
                )

        threading.Thread(target=tick, name=f"schedule-{schedule.name}", daemon=True).start()
        log.info("%s every %.0f s -> %s", schedule.name, period, schedule.function)
