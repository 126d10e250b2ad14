"""The simulated fleet against the real ingest handler and a real broker, as `make local` runs it."""

from __future__ import annotations

import threading
import uuid

from device_testkit import API_KEY, Watcher

from gasmon_device.simulator import DevicePlan, DeviceReport, run_fleet

CONNECTED = b'{"state":{"reported":{"connected":"true"}}}'
DISCONNECTED = b'{"state":{"reported":{"connected":"false"}}}'


def test_a_fleet_posts_readings_raises_warnings_and_leaves_as_planned(gateway, broker) -> None:
    # Given three virtual devices: one steady, one that drops off without DISCONNECT, one that leaves cleanly
    prefix = f"sim-{uuid.uuid4().hex[:6]}"
    watcher = Watcher(broker.port, "my/things/+/update")
    plans = [
        DevicePlan("steady", spike_at_sample=2),
        DevicePlan("drop", leave_after=0.5, away_for=0.6),
        DevicePlan("clean", leave_after=0.5, away_for=0.6),
    ]
    stop = threading.Event()
    reports: list[DeviceReport] = []
    base_url = gateway.url.removesuffix("/readings")

    # When the fleet runs at 10 readings a second, random plumes off, device 1 forced to spike once
    fleet = threading.Thread(
        target=lambda: reports.extend(
            run_fleet(
                base_url,
                API_KEY,
                "127.0.0.1",
                broker.port,
                devices=3,
                interval=0.1,
                stop_event=stop,
                plans=plans,
                seed=11,
                thing_prefix=prefix,
                spike_probability=0.0,
            )
        )
    )
    fleet.start()
    try:
        # Then the two leaving devices go offline (device 2 by its Last Will) and come back
        for number in (2, 3):
            topic = f"my/things/{prefix}-{number:02d}/update"
            assert watcher.wait_for(topic, 3) == [CONNECTED, DISCONNECTED, CONNECTED], topic
    finally:
        stop.set()
        fleet.join(15)
        expected = {1: 2, 2: 4, 3: 4}  # messages per device once all have stopped
        watcher_messages = {
            n: watcher.wait_for(f"my/things/{prefix}-{n:02d}/update", c, 3) for n, c in expected.items()
        }
        watcher.close()

    # And on stop every device says connected=false itself
    assert watcher_messages[1] == [CONNECTED, DISCONNECTED]
    assert watcher_messages[2] == watcher_messages[3] == [CONNECTED, DISCONNECTED, CONNECTED, DISCONNECTED]

    # And every reading each device took reached the store exactly once, backlog included
    assert [r.thing_name for r in reports] == [f"{prefix}-01", f"{prefix}-02", f"{prefix}-03"]
    assert all(r.queued == 0 and r.dead_letters == 0 and r.samples == r.delivered > 5 for r in reports)
    assert gateway.stored() == 4 * sum(r.samples for r in reports)
    assert {row[0] for row in gateway.stored_rows()} == {"1", "2", "3"}
    assert reports[1].departures == ["drop"] and reports[2].departures == ["clean"]

    # And device 1's plume crossed the seed's NO2 threshold, so the server published a warning on pi/1
    warnings = [payload for topic, payload in gateway.publisher.messages if topic == "pi/1"]
    no2 = [w for w in warnings if w["gas"] == "no2"]
    assert no2 and no2[0]["groupid"] == "1" and no2[0]["warning"] == "no2 warning" and no2[0]["value"] >= 88
