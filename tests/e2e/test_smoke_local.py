"""`make smoke LOCAL=1 DATA_DIR=...` against a running local stack, as docs/deploy.md and docs/local.md
tell a newcomer to run it: every step passes, again on the next run, and after a run that was
interrupted with its alarm open."""

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from gasmon_admin.smoke import STEPS
from gasmon_local.process import StackProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def make_smoke(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "smoke", "LOCAL=1", f"DATA_DIR={data_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def step_lines(output: str) -> dict[str, str]:
    """`PASS  warning    alarm ... opened` -> {"warning": "PASS  warning ..."}."""
    lines = [line for line in output.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    return {line[6:16].strip(): line for line in lines}


def assert_passed(run: subprocess.CompletedProcess[str]) -> dict[str, str]:
    lines = step_lines(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(lines) == list(STEPS)
    assert all(line.startswith("PASS") for line in lines.values()), run.stdout
    assert run.stdout.strip().endswith("smoke: passed")
    return lines


def test_make_smoke_local_passes_every_step_on_every_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    with StackProcess(data_dir, "--no-devices", "--quiet"):
        # When a newcomer runs the smoke test against the running stack
        first = assert_passed(make_smoke(data_dir))
        # Then the smoke device was provisioned, the warning came on pi/1 and the reading reads back
        assert "provisioned" in first["device"]
        assert "no2 warning" in first["warning"] and "opened" in first["warning"]
        assert "GET /warnings lists reading" in first["read back"]
        assert "cleared" in first["clear"]

        # When the run is repeated at once, Then it reuses the device and warns again (a new alarm)
        second = assert_passed(make_smoke(data_dir))
        assert "reused" in second["device"]
        alarm = first["warning"].split()[3]
        assert alarm not in second["warning"]

        # Given a run that was interrupted after its warning (the smoke device's NO2 alarm left open)
        state = json.loads((data_dir / "smoke" / "smoke.json").read_text())
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        at = datetime.fromisoformat(state["newest"]) + timedelta(seconds=2)
        stamp = at.astimezone(ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M:%S")
        document = {
            "groupid": state["group"],
            "no2": {"sensorid": "0006", "sensortype": "9", "value": "150", "createdtime": stamp},
        }
        answer = requests.post(
            endpoints["api"] + "/readings", headers={"x-api-key": state["api_key"]}, json=document, timeout=10
        )
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
        # When the smoke test runs again, Then it closes that alarm first and every step passes
        third = assert_passed(make_smoke(data_dir))
        assert "is open: clean air closes it first" in third["device"]


def test_make_smoke_local_without_a_stack_fails_in_one_line_per_step(tmp_path: Path) -> None:
    # When no stack runs on the data dir
    run = make_smoke(tmp_path / "nothing")
    # Then the first step fails saying how to start one, the rest are skipped, and the exit status is not 0
    lines = step_lines(run.stdout)
    assert run.returncode != 0
    assert lines["stack"].startswith("FAIL") and "make local" in lines["stack"]
    assert all(lines[name].startswith("SKIP") for name in STEPS[1:])
