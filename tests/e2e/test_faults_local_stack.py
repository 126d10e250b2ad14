"""The device agent against `gasmon-local --faults ...`: every reading stored once, every episode announced.

The issue's own run: store replies lost, publishes refused and the alarm table failing on a seeded
schedule; the Pi agent (`gasmon-device publish`, a real process) replays a recording in which NO2
crosses 88 twice, retrying each batch as it does in the field. Checked from outside, as a user
would: the SQLite store's rows and the messages on `pi/1`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gasmon_local.process import StackProcess
from tests.e2e.conftest import provision
from tests.e2e.test_local_stack import Subscriber

FAULTS = "store-lost-reply=0.3,publish-error=0.3,alarm-store-error=0.2"
# NO2 every 10 s: quiet, episode A (90..95), 100 s clean, episode B (89..93), clean.
NO2 = [50.0] * 4 + [90.0, 95.0, 92.0] + [30.0] * 10 + [91.0, 93.0, 89.0] + [20.0] * 9
EPISODE_STARTS = (4, 17)


def recording(path: Path) -> tuple[Path, list[datetime]]:
    start = datetime.now(UTC).astimezone(ZoneInfo("Asia/Seoul")).replace(microsecond=0) - timedelta(minutes=10)
    times = [start + timedelta(seconds=10 * i) for i in range(len(NO2))]
    rows = [f"{t:%Y-%m-%d %H:%M:%S},20.50,{v:.2f},26.11,400" for t, v in zip(times, NO2, strict=True)]
    path.write_text("\n".join(["createdtime,co,no2,c2h5oh,h2", *rows]) + "\n")
    return path, times


def test_the_device_agent_under_faults_gets_every_reading_stored_once_and_every_episode_announced(
    tmp_path: Path,
) -> None:
    with StackProcess(tmp_path / "stack", "--no-devices", "--faults", FAULTS, "--fault-seed", "7") as stack:
        assert "FAULTS" in stack.log_tail(200) and "store-lost-reply=0.3" in stack.log_tail(200)
        subscriber = Subscriber(*stack.mqtt_address(), "pi/1")
        try:
            # Given a Pi agent replaying a recording where NO2 crosses 88 twice
            csv_path, times = recording(tmp_path / "recording.csv")
            key = provision(stack, "e2e-faults-pi", "e2e-faults")["api_key"]
            config = tmp_path / "device.toml"
            config.write_text('thing_name = "e2e-faults-pi"\ngroupid = "e2e-faults"\ngps = "37.61, 126.99"\n')
            env = {
                **os.environ,
                "GASMON_CONFIG": str(config),
                "GASMON_ENDPOINT": stack.endpoints["api"] + "/readings",
                "GASMON_API_KEY": key,
                "GASMON_QUEUE_PATH": str(tmp_path / "device" / "queue.sqlite3"),
                "GASMON_BATCH_SIZE": "5",
                "GASMON_INTERVAL": "0.01",
                "GASMON_BACKOFF_BASE": "0.05",
                "GASMON_BACKOFF_CAP": "0.5",
            }
            # When it posts them all through the faults (each 503 retried after its Retry-After)
            command = [sys.executable, "-m", "gasmon_device", "publish", "--csv", str(csv_path), "--recorded-times"]
            run = subprocess.run([*command, "--samples", str(len(NO2))], env=env, capture_output=True, timeout=120)
            assert run.returncode == 0, run.stderr.decode()[-3000:]

            # Then every reading is stored exactly once (4 gases each)
            with sqlite3.connect(stack.endpoints["sqlite_path"]) as db:
                rows = db.execute("SELECT reading_id, gas, value FROM readings WHERE groupid = 'e2e-faults'").fetchall()
            assert len(rows) == len(NO2) * 4 and len({r[0] for r in rows}) == len(rows)
            assert sorted(r[2] for r in rows if r[1] == "no2") == sorted(NO2)

            # And each episode's open (or, while the alarm table failed, its plain warning) reached pi/1
            def announced(start: int) -> bool:
                episode = set(times[start : start + 3])
                return any(
                    m.get("groupid") == "e2e-faults"
                    and "warning" in m
                    and datetime.fromisoformat(m["createdtime"]) in episode
                    for m in subscriber.messages
                )

            for start in EPISODE_STARTS:
                subscriber.wait_for(lambda _m, start=start: announced(start))
            opens = {
                m["alarm_id"]
                for m in subscriber.messages
                if m.get("groupid") == "e2e-faults" and m.get("event") == "open"
            }
            assert 1 <= len(opens) <= len(EPISODE_STARTS)
            # And no warning names a reading below the level
            for message in subscriber.messages:
                if message.get("groupid") == "e2e-faults" and message.get("event") in (None, "open"):
                    assert "warning" not in message or message["value"] >= 88.0, message
        finally:
            subscriber.close()
        posts = [line for line in stack.log_tail(5000).splitlines() if "POST   /readings" in line]
    # And the faults really happened: some POSTs were answered 503 and retried
    assert any(" 503 " in line for line in posts) and any(" 200 " in line for line in posts), posts
