"""kill -9 of a real `gasmon-device publish` process in the middle of a send, then a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from device_testkit import API_KEY, IngestGateway

from gasmon_device.queue import read_health

READINGS = 40
BATCH = 10


def recording(path: Path) -> Path:
    """40 readings recorded 5 s apart over the last few minutes (Asia/Seoul wall time, as the seed writes it)."""
    start = datetime.now(UTC).astimezone(ZoneInfo("Asia/Seoul")) - timedelta(minutes=10)
    lines = ["createdtime,co,no2,c2h5oh,h2"]
    for i in range(READINGS):
        moment = start + timedelta(seconds=5 * i)
        lines.append(f"{moment:%Y-%m-%d %H:%M:%S},{20 + i % 7}.50,{50 + i % 11}.25,26.11,{400 + i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def device_env(tmp_path: Path, gateway: IngestGateway) -> dict[str, str]:
    empty_config = tmp_path / "device.toml"
    empty_config.write_text('groupid = "2"\ngps = "37.61, 126.99"\n')
    return {
        **os.environ,
        "GASMON_CONFIG": str(empty_config),
        "GASMON_ENDPOINT": gateway.url,
        "GASMON_API_KEY": API_KEY,
        "GASMON_QUEUE_PATH": str(tmp_path / "state" / "queue.sqlite3"),
        "GASMON_BATCH_SIZE": str(BATCH),
        "GASMON_INTERVAL": "0.01",
    }


def wait_for(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(
    "stage", ["before", "after"], ids=["killed-before-server-stored", "killed-after-server-stored"]
)
def test_kill_9_mid_send_then_restart_stores_every_reading_exactly_once(tmp_path, gateway, stage) -> None:
    # Given a publisher replaying 40 recorded readings in batches of 10, and a server that holds the
    # first request either before storing it or after storing it but before answering
    env = device_env(tmp_path, gateway)
    queue_path = Path(env["GASMON_QUEUE_PATH"])
    csv_path = recording(tmp_path / "recording.csv")
    held, release = threading.Event(), threading.Event()
    first_batch: list[int] = []

    def hold(at: str, documents: int) -> bool:
        if at == stage and not held.is_set():
            first_batch.append(documents)
            held.set()
            release.wait(20)
            return stage == "after"  # a request cut off before it was complete never reaches the store
        return True

    gateway.on_request = hold
    command = [sys.executable, "-m", "gasmon_device", "publish"]
    process = subprocess.Popen(
        [*command, "--csv", str(csv_path), "--recorded-times"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert held.wait(20), "the publisher never sent"
        # ... while its sampler goes on queueing the whole recording
        assert wait_for(lambda: read_health(queue_path, 1).depth == READINGS)

        # When the process is killed with SIGKILL in the middle of that send
        process.kill()
        process.wait(10)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9

    # Then the on-disk queue still holds every reading: nothing was acknowledged, nothing lost
    assert read_health(queue_path, 1).depth == READINGS
    in_flight = first_batch[0] if stage == "after" else 0
    assert 1 <= first_batch[0] <= BATCH
    assert gateway.stored() == in_flight * 4

    # When the publisher is started again and drains its queue
    gateway.on_request = None
    restart = subprocess.run([*command, "--drain"], env=env, capture_output=True, timeout=60)
    assert restart.returncode == 0, restart.stderr.decode()

    # Then each of the 160 readings is stored exactly once and the queue is empty
    assert gateway.stored() == READINGS * 4
    rows = gateway.stored_rows()
    assert len({(groupid, sensorid, created) for groupid, sensorid, created, _ in rows}) == READINGS * 4
    no2_times = sorted(created for _, sensorid, created, _ in rows if sensorid == "0006")
    assert len(no2_times) == READINGS
    health = read_health(queue_path, 1)
    assert health.depth == 0 and health.dead_letters == 0
    # the batch whose answer was lost was sent again and recognised as a duplicate, not stored twice
    assert health.duplicates == in_flight
    assert health.delivered + health.duplicates == READINGS
