"""The agent as the Pi runs it: Python 3.11 (Raspberry Pi OS bookworm's python3) with only
device/requirements.txt installed, never the layer or the dev tools. The rest of the device tests
run on the dev venv's 3.13; this one runs the agent itself on 3.11 against the real ingest
handler, so 3.12+ syntax or a dependency the Pi lacks fails here.

The 3.11 venv is `.venv-pi/` (built once, again when device/requirements.txt changes); the test
is skipped only where no `python3.11` exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from device_testkit import API_KEY

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "device"
PI_VENV = ROOT / ".venv-pi"
# Debian's own python3.11 first (as on Raspberry Pi OS): a pyenv shim on PATH may point elsewhere.
PYTHON311 = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else shutil.which("python3.11") or ""
PROBE = "import importlib.util as u; print([m for m in ('gasmon', 'boto3', 'amqtt') if u.find_spec(m)])"


def pi_python() -> Path:
    """`.venv-pi/bin/python`: Python 3.11 with exactly device/requirements.txt."""
    requirements = DEVICE / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = PI_VENV / ".requirements-sha256"
    python = PI_VENV / "bin" / "python"
    if not (stamp.exists() and stamp.read_text() == digest and python.exists()):
        shutil.rmtree(PI_VENV, ignore_errors=True)
        subprocess.run([PYTHON311, "-m", "venv", str(PI_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            check=True,
            timeout=300,
            capture_output=True,
        )
        stamp.write_text(digest)
    return python


@pytest.mark.skipif(not PYTHON311, reason="no python3.11 here (the Pi's Python)")
def test_the_agent_publishes_on_python_311_with_only_its_own_requirements(tmp_path: Path, gateway) -> None:
    # Given the Pi's Python with only the agent's requirements, and the agent's source
    python = pi_python()
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=True)  # fmt: skip
    assert version.stdout.strip() == "(3, 11)"
    config = tmp_path / "device.toml"
    config.write_text('thing_name = "pi-311"\ngroupid = "7"\ninterval_seconds = 0.05\n')
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("GASMON_", "PYTHON"))}
    environment |= {
        "PYTHONPATH": str(DEVICE),  # run from the checkout, as the Pi's venv does with `pip install ./device`
        "GASMON_CONFIG": str(config),
        "GASMON_ENDPOINT": gateway.url,
        "GASMON_API_KEY": API_KEY,
        "GASMON_QUEUE_PATH": str(tmp_path / "queue.sqlite3"),
    }

    # When it publishes ten readings with a status line every 0.2 s, then reads its status
    published = subprocess.run(
        [str(python), "-m", "gasmon_device", "publish", "--samples", "10", "--status-every", "0.2"],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    status = subprocess.run(
        [str(python), "-m", "gasmon_device", "status", "--json"],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Then the server stored every reading, the journal has a status line, and nothing of the
    # layer or the dev tools was importable (the Pi has neither)
    assert published.returncode == 0, published.stderr[-2000:]
    assert gateway.stored() == 40
    assert "status: " in published.stderr and " delivered since start" in published.stderr
    assert status.returncode == 0 and '"delivered": 10' in status.stdout
    probe = subprocess.run(
        [str(python), "-c", PROBE],
        env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"
