"""`kill -9` of `gasmon-local` loses no DynamoDB change a function had answered for.

The stack is started as a user starts it; an alarm opens (its message on `pi/1`) and a device
connects (presence records it); the stack is killed with SIGKILL, no clean stop, no snapshot;
it starts again on the same data directory. The alarm and the presence item are still there, and
the next over-level reading of the same episode neither re-opens nor re-announces the alarm.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from gasmon_local.aws import client
from gasmon_local.process import StackProcess
from tests.e2e.conftest import WAIT, device
from tests.e2e.test_local_stack import Subscriber

pytestmark = pytest.mark.e2e

SEOUL = ZoneInfo("Asia/Seoul")


def no2_document(groupid: str, value: str, at: datetime) -> dict[str, Any]:
    stamp = at.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "groupid": groupid,
        "gps": "37.61002501514269, 126.99636868892937",
        "no2": {"sensorid": "0006", "sensortype": "9", "value": value, "createdtime": stamp},
    }


def post(stack: StackProcess, document: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        stack.endpoints["api"] + "/readings",
        json=document,
        headers={"x-api-key": stack.endpoints["api_key"]},
        timeout=WAIT,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def open_alarms(stack: StackProcess, device_name: str) -> list[dict[str, Any]]:
    answer = requests.get(
        stack.endpoints["api"] + "/alarms",
        params={"state": "open", "device": device_name},
        headers={"x-api-key": stack.endpoints["api_key"]},
        timeout=WAIT,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["alarms"])


def presence_item(stack: StackProcess, client_id: str) -> dict[str, Any] | None:
    dynamodb = client("dynamodb", stack.endpoints["aws"], stack.endpoints["region"])
    for table in dynamodb.list_tables()["TableNames"]:
        if "Presence" in table:
            item = dynamodb.get_item(TableName=table, Key={"client_id": {"S": client_id}}, ConsistentRead=True)
            return item.get("Item")
    raise AssertionError("the stack has no presence table")


def eventually(check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_kill_9_loses_no_alarm_or_presence_change(tmp_path: Path) -> None:
    group = f"k9-{uuid.uuid4().hex[:8]}"
    pi_name = f"k9-pi-{uuid.uuid4().hex[:6]}"
    started = datetime.now(SEOUL) - timedelta(minutes=3)

    # Given a stack where an NO2 alarm opened (announced on pi/1) and a Pi connected
    first = StackProcess(tmp_path, "--no-devices").start()
    try:
        host, port = first.mqtt_address()
        subscriber = Subscriber(host, port, "pi/1")
        answer = post(first, no2_document(group, "95.00", started))
        assert answer["warnings"] == 1
        opened = subscriber.wait_for(lambda m: m.get("groupid") == group and m.get("event") == "open")
        subscriber.close()
        pi = device(first, pi_name)
        assert eventually(lambda: presence_item(first, pi_name)), "presence never recorded the connect"

        # When the stack is killed with SIGKILL: no clean stop, no snapshot
        assert first.process is not None
        first.process.kill()
        first.process.wait(WAIT)
        pi.loop_stop()
    finally:
        first.stop()
    assert not (tmp_path / "dynamodb" / "snapshot.json").exists()  # only the journal can bring it back

    # And it starts again on the same data directory
    with StackProcess(tmp_path, "--no-devices") as second:
        # Then the presence item and the open alarm are there
        assert presence_item(second, pi_name) is not None
        alarms = open_alarms(second, group)
        assert [a["alarm_id"] for a in alarms] == [opened["alarm_id"]]

        # And the next over-level reading of that episode neither re-opens nor re-announces it
        subscriber = Subscriber(*second.mqtt_address(), "pi/1")
        try:
            again = post(second, no2_document(group, "96.00", started + timedelta(minutes=1)))
            assert again["accepted"] == 1 and again["warnings"] == 0, again
            assert [a["alarm_id"] for a in open_alarms(second, group)] == [opened["alarm_id"]]
            time.sleep(0.5)  # a stray message would have arrived by now (the POST publishes before answering)
            assert [m for m in subscriber.messages if m.get("groupid") == group] == []
        finally:
            subscriber.close()
