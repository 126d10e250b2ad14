"""`gasmon-device publish` says it is healthy: a status line at INFO every `--status-every` seconds
(delivered since start, queued, last success), a WARNING while sends fail (issue 15)."""

from __future__ import annotations

import logging
import time

import pytest

from gasmon_device.cli import main
from gasmon_device.publisher import status_line
from gasmon_device.queue import QueueHealth


def health(**changes: object) -> QueueHealth:
    values: dict[str, object] = {
        "path": "q",
        "depth": 0,
        "queued_bytes": 0,
        "max_bytes": 1,
        "oldest_enqueued_ms": None,
        "dead_letters": 0,
        "enqueued": 0,
        "delivered": 0,
        "duplicates": 0,
        "dead": 0,
        "dropped": 0,
        "dead_dropped": 0,
        "last_success_ms": None,
        "last_attempt_ms": None,
        "last_error": None,
        "consecutive_failures": 0,
    }
    values.update(changes)
    return QueueHealth(**values)  # type: ignore[arg-type]


def test_the_status_line_counts_this_run_and_says_when_the_last_success_was() -> None:
    # Given a queue that delivered 120 documents, 100 of them before this run, 3 s ago
    now = 1_700_000_000_000
    # When the status line is made
    line = status_line(health(delivered=120, depth=2, last_success_ms=now - 3_000), now, delivered_before=100)
    # Then it says this run's deliveries, what is queued and when the last success was
    assert line == "status: 20 delivered since start, 2 queued, last success 3 s ago"


def test_the_status_line_of_a_failing_queue_names_the_error() -> None:
    # Given a queue failing for 4 attempts, with dead letters
    line = status_line(health(consecutive_failures=4, last_error="HTTP 503", dead_letters=1), 0)
    # Then the line says so
    assert "never" in line and "1 dead letter(s)" in line and "failing 4 attempt(s) in a row: HTTP 503" in line


def test_publish_logs_a_status_line_while_healthy(device_env, gateway, caplog: pytest.LogCaptureFixture) -> None:
    # Given a configured device that samples every 20 ms
    # When it publishes for a while with a status line every 0.2 s
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="gasmon_device"):
        assert main(["publish", "--samples", "25", "--status-every", "0.2"]) == 0
    assert time.monotonic() - started > 0.2  # long enough for at least one line

    # Then INFO status lines say how many were delivered, what is queued and the last success
    lines = [r for r in caplog.records if r.getMessage().startswith("status: ")]
    assert lines, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.INFO for r in lines)
    assert " delivered since start, " in lines[-1].getMessage()
    assert "last success " in lines[-1].getMessage() and "never" not in lines[-1].getMessage()
