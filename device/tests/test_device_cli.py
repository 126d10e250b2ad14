"""The `gasmon-device` command line: publish, status, dead-letters, config."""

from __future__ import annotations

import json

from device_testkit import API_KEY

from gasmon_device.cli import main
from gasmon_device.queue import DiskQueue


def test_publish_a_few_samples_then_status_reports_them(device_env, gateway, capsys) -> None:
    # Given a configured device
    # When it publishes five simulated readings and exits
    assert main(["publish", "--samples", "5"]) == 0

    # Then the store has them, and `status` shows an empty queue and a recent success
    assert gateway.stored() == 20
    assert {row[0] for row in gateway.stored_rows()} == {"7"}
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "queued        0 document(s)" in out
    assert "dead letters  0" in out
    assert "dropped       0" in out
    assert "delivered     5 (+0 the server already had)" in out
    assert "s ago)" in out.split("last success")[1].splitlines()[0]

    # And `status --json` carries the same for scripts
    assert main(["status", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)
    assert (health["depth"], health["delivered"], health["dropped"]) == (0, 5, 0)


def test_status_of_a_queue_that_is_failing(device_env, capsys) -> None:
    # Given a queue with two readings waiting, one dead letter and a failure streak
    queue = DiskQueue(device_env, max_bytes=1 << 20)
    for n in range(3):
        queue.put(json.dumps({"groupid": "7", "n": n}), now_ms=1_700_000_000_000)
    queue.dead_letter({queue.documents()[0].id: "no2.value: must be a number"}, 200, now_ms=1_700_000_000_000)
    queue.record_failure("ConnectionError: network unreachable", now_ms=1_700_000_000_000)
    queue.close()

    # When status is asked for
    assert main(["status"]) == 0
    out = capsys.readouterr().out

    # Then it says what is wrong
    assert "queued        2 document(s)" in out
    assert "dead letters  1" in out
    assert "last success  never" in out
    assert "failing       1 attempt(s) in a row: ConnectionError: network unreachable" in out

    # And dead-letters lists the refused document with the reason, and --requeue puts it back
    assert main(["dead-letters"]) == 0
    assert "no2.value: must be a number" in capsys.readouterr().out
    assert main(["dead-letters", "--requeue"]) == 0
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["depth"] == 3


def test_status_without_a_queue_and_config_errors_exit_non_zero(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GASMON_QUEUE_PATH", str(tmp_path / "missing.sqlite3"))
    monkeypatch.setenv("GASMON_CONFIG", str(tmp_path / "absent.toml"))
    assert main(["status"]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.delenv("GASMON_CONFIG")
    assert main(["status"]) == 1
    assert "has the publisher run yet" in capsys.readouterr().err


def test_config_masks_the_api_key(device_env, capsys) -> None:
    assert main(["config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["api"]["api_key"] == API_KEY[:4] + "..."
    assert shown["groupid"] == "7"
