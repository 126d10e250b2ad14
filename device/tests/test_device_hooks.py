"""Alarm hooks: what a warning makes the Pi do."""

from __future__ import annotations

import json
import sys

from gasmon_device.config import HookSettings
from gasmon_device.payload import WarningAlert, parse_warning
from gasmon_device.subscriber import CommandHook, GpioBuzzerHook, build_hook, log_hook

ALERT = WarningAlert(warning="no2 warning", gas="no2", value=95.5, threshold=88.0, groupid="2", sensorid="0006")


class FakeBuzzer:
    def __init__(self) -> None:
        self.events: list[str] = []

    def on(self) -> None:
        self.events.append("on")

    def off(self) -> None:
        self.events.append("off")


def test_the_buzzer_sounds_for_the_configured_time_and_longer_when_critical() -> None:
    # Given a buzzer hook on a fake pin
    buzzer, slept = FakeBuzzer(), []
    hook = GpioBuzzerHook(pin=18, seconds=2.0, output=buzzer, sleep=slept.append)

    # When a warning and then a critical warning arrive
    hook(ALERT)
    hook(WarningAlert(warning="no2 warning", level="critical"))

    # Then it buzzes 2 s, then 4 s, and is always switched off again
    assert buzzer.events == ["on", "off", "on", "off"]
    assert slept == [2.0, 4.0]


def test_the_command_hook_gets_the_warning_as_json(tmp_path) -> None:
    # Given a command that writes what it receives to a file
    out = tmp_path / "alarm.json"
    script = f"import sys, os; open({str(out)!r}, 'w').write(sys.stdin.read() + os.environ['GASMON_WARNING'])"
    hook = build_hook(HookSettings(kind="command", command=(sys.executable, "-c", script)))

    # When a warning arrives
    hook(ALERT)

    # Then the command saw the whole warning and its text in the environment
    text = out.read_text()
    assert text.endswith("no2 warning")
    assert json.loads(text.removesuffix("no2 warning"))["value"] == 95.5
    assert isinstance(hook, CommandHook)


def test_a_python_hook_is_loaded_by_name_and_log_is_the_default() -> None:
    assert build_hook(HookSettings()) is log_hook
    assert build_hook(HookSettings(kind="python", target="gasmon_device.payload:parse_warning")) is parse_warning
