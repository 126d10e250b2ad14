"""Starting `gasmon-local` as a separate process, as a user does (for end-to-end tests and benches).

    with StackProcess(tmp_path, "--no-devices", "--grace", "2") as stack:
        requests.post(stack.endpoints["api"] + "/readings", ...)

Every port is 0, so the stack picks free ones and reports them in `endpoints.json`; the context
waits for that file, and on exit stops the stack with SIGINT (Ctrl-C) and waits for a clean exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

PORT_FLAGS = ("--http-port", "0", "--mqtt-port", "0", "--mqtts-port", "0", "--iot-data-port", "0", "--aws-port", "0")


class StackProcessError(RuntimeError):
    """The stack did not come up (or exited); the message carries the end of its log."""


class StackProcess:
    """A `gasmon-local` child process with its own data directory and log file."""

    def __init__(self, data_dir: Path, *args: str, start_timeout: float = 90.0) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.start_timeout = start_timeout
        self.log_path = data_dir / "gasmon-local.log"
        self.endpoints: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> StackProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        endpoints_file = self.data_dir / "endpoints.json"
        endpoints_file.unlink(missing_ok=True)
        command = [str(Path(sys.executable).with_name("gasmon-local")), "--data-dir", str(self.data_dir)]
        command += [*PORT_FLAGS, *self.args]
        environment = dict(os.environ)
        environment.pop("GASMON_API_KEY", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + self.start_timeout
        while not endpoints_file.exists():
            if self.process.poll() is not None:
                raise StackProcessError(f"gasmon-local exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackProcessError(f"gasmon-local did not start in {self.start_timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.endpoints = json.loads(endpoints_file.read_text())
        return self

    def mqtt_address(self) -> tuple[str, int]:
        host, port = str(self.endpoints["mqtt"]).removeprefix("mqtt://").rsplit(":", 1)
        return host, int(port)

    def mqtts_address(self) -> tuple[str, int]:
        host, port = str(self.endpoints["mqtts"]).removeprefix("mqtts://").rsplit(":", 1)
        return host, int(port)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """Ctrl-C, then wait; killed only if it does not stop in time. Returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None

    def __enter__(self) -> StackProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
