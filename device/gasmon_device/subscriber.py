"""The alert subscriber: what the seed's `sub.py` does, plus presence and a pluggable alarm.

It keeps one MQTT connection (see `gasmon_device.mqtt.DeviceConnection` for the Last Will,
keep-alive and reconnect rules), subscribes to the warning topic (`pi/1`) at QoS 1, logs every
warning and hands it to a hook: a buzzer on a GPIO pin, a command, a Python function, or just
the log. Hooks run on a worker thread so a slow buzzer never stalls the MQTT keep-alive.
"""

from __future__ import annotations

import importlib
import json
import logging
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from .config import DeviceConfig, HookSettings
from .mqtt import DeviceConnection
from .payload import NotAWarningError, WarningAlert, parse_warning

logger = logging.getLogger(__name__)


class AlertHook(Protocol):
    """Called once per warning received (on the hook worker thread)."""

    def __call__(self, alert: WarningAlert) -> None: ...


def log_hook(alert: WarningAlert) -> None:
    """The default hook: the subscriber already logged the warning, so nothing more to do."""


class GpioBuzzerHook:
    """Sounds a buzzer on a GPIO pin (BCM numbering) for `seconds`, longer beeps for `critical`.

    `output` is anything with `on()` and `off()` (gpiozero's `Buzzer`); it is created lazily so the
    hook can be configured on a machine without GPIO and tested with a fake.
    """

    def __init__(
        self,
        pin: int,
        seconds: float = 2.0,
        output: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pin = pin
        self.seconds = seconds
        self._output = output
        self._sleep = sleep

    def _device(self) -> Any:
        if self._output is None:
            try:
                from gpiozero import Buzzer  # type: ignore[import-not-found]
            except ImportError:
                raise RuntimeError("the gpio hook needs gpiozero: `sudo apt install python3-gpiozero`") from None
            self._output = Buzzer(self.pin)
        return self._output

    def __call__(self, alert: WarningAlert) -> None:
        device = self._device()
        device.on()
        try:
            self._sleep(self.seconds * (2 if alert.level == "critical" else 1))
        finally:
            device.off()


class CommandHook:
    """Runs a command with the warning as JSON on standard input (and GASMON_WARNING in its env)."""

    def __init__(self, command: tuple[str, ...], timeout: float = 10.0) -> None:
        self.command = command
        self.timeout = timeout

    def __call__(self, alert: WarningAlert) -> None:
        import os

        text = json.dumps(asdict(alert))
        result = subprocess.run(
            list(self.command),
            input=text.encode(),
            env={**os.environ, "GASMON_WARNING": alert.warning},
            timeout=self.timeout,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            logger.error(
                "warning hook %s exited with %d: %s",
                self.command[0],
                result.returncode,
                result.stderr.decode(errors="replace")[:300],
            )


def load_python_hook(target: str) -> AlertHook:
    """`package.module:function` -> that function."""
    module_name, _, attribute = target.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{target} is not callable")
    return function  # type: ignore[no-any-return]


def build_hook(settings: HookSettings) -> AlertHook:
    """The hook the config names."""
    if settings.kind == "gpio":
        return GpioBuzzerHook(settings.gpio_pin, settings.buzz_seconds)
    if settings.kind == "command":
        return CommandHook(settings.command, settings.timeout_seconds)
    if settings.kind == "python":
        return load_python_hook(settings.target)
    return log_hook


class AlertSubscriber:
    """Listens for warnings and raises the alarm; one instance per device."""

    def __init__(
        self,
        config: DeviceConfig,
        hook: AlertHook | None = None,
        *,
        connection: DeviceConnection | None = None,
    ) -> None:
        self.config = config
        self.hook: AlertHook = hook or log_hook
        self.received: deque[WarningAlert] = deque(maxlen=100)  # the latest, for tests and status
        self._alerts: queue.Queue[WarningAlert | None] = queue.Queue(maxsize=100)
        self.connection = connection or DeviceConnection(
            config.mqtt,
            config.thing_name,
            client_id=config.client_id,
            subscriptions=[(config.mqtt.warning_topic, 1)],
            on_message=self.handle_message,
        )
        self._worker = threading.Thread(target=self._run_hooks, name="gasmon-alert-hook", daemon=True)

    def handle_message(self, topic: str, payload: bytes) -> None:
        """Log a warning and queue it for the hook; ignore other messages on the topic."""
        try:
            alert = parse_warning(payload, topic)
        except NotAWarningError as exc:
            logger.info("ignored a message on %s that is not a warning (%s): %.200r", topic, exc, payload)
            return
        if self.config.mqtt.only_own_group and alert.groupid not in (None, self.config.groupid):
            logger.info("warning for group %s (not ours): %s", alert.groupid, alert.describe())
            return
        logger.warning("WARNING on %s: %s", topic, alert.describe())
        self.received.append(alert)
        try:
            self._alerts.put_nowait(alert)
        except queue.Full:
            logger.error("the alarm hook is 100 warnings behind; dropped this one from the hook (it is logged)")

    def _run_hooks(self) -> None:
        while True:
            alert = self._alerts.get()
            if alert is None:
                return
            try:
                self.hook(alert)
            except Exception:
                logger.exception("the warning hook failed for %s", alert.describe())

    def start(self) -> None:
        self._worker.start()
        self.connection.start()

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set (SIGTERM/SIGINT in the CLI), then disconnect cleanly."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        self.connection.stop()
        self._alerts.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=self.config.hook.timeout_seconds + 1)
