"""The dashboard in headless Chromium against `gasmon-local`, started as a user starts `make local`.

Nothing is faked: gasmon's template.yaml with its real functions, the SQLite reading store, the
alarm table (moto DynamoDB) ingest writes and the query function reads, and presence fed by the
broker's lifecycle events. Two Pis post an hour of readings over HTTP and connect over MQTT; one
loses its connection. The page is then read the way an operator reads it. The test saves its
screenshot to tests/e2e/artifacts/dashboard-local.png; `GASMON_UPDATE_SCREENSHOT=1` also
refreshes docs/dashboard.png, the one the README shows.
"""

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gasmon_local.functions import ROOT
from gasmon_local.process import StackProcess
from tests.e2e.conftest import (
    ARTIFACTS,
    SCREENSHOT,
    WAIT,
    Hour,
    chart_points,
    device,
    document,
    drop,
    get,
    iso_time,
    no_overflow_at_phone_width,
    open_last_hour,
    post,
    post_batch,
    provision,
    threshold_line,
    wait_for_mail,
)

pytestmark = pytest.mark.e2e

GRACE = 2
PI_A = "e2e-pi-a"  # stays connected
PI_B = "e2e-pi-b"  # its CO goes critical, then it drops off


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    data_dir = tmp_path_factory.mktemp("dashboard-local")
    template = ROOT / "template.yaml"
    with StackProcess(data_dir, "--template", str(template), "--no-devices", "--grace", str(GRACE)) as process:
        yield process


def eventually(stack: StackProcess, what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT} s\n{stack.log_tail()}"
        time.sleep(0.2)


def test_the_dashboard_shows_what_the_local_stack_saw(stack: StackProcess, browser: Any) -> None:
    # The operator's viewer key reads; each Pi posts with the key `gasmon-admin provision` gave it.
    api, key = stack.endpoints["api"] + "/", stack.endpoints["viewer_key"]
    device_keys = {PI_A: provision(stack, PI_A, "2")["api_key"], PI_B: provision(stack, PI_B, "3")["api_key"]}

    def statuses() -> dict[str, str]:
        return {d["device"]: d["status"] for d in get(api, key, "devices")["devices"]}

    # Given an hour of readings posted as two Pis post them (ISO times with their offset): PI_A's
    # NO2 reached 95.50 twenty minutes ago and came back down, PI_B's CO went to 60 then 240
    now = datetime.now(UTC).replace(microsecond=0)
    hour = Hour(now, co_spike=True, devices=(PI_A, PI_B), stamp=iso_time, seed_group=None)
    answer = post_batch(api, lambda deviceid, _: device_keys[str(deviceid)], hour.batch)
    assert answer["rejected"] == 0, answer
    # ... both Pis connected over MQTT, and then PI_B's connection dropped without a DISCONNECT
    pi_a = device(stack, PI_A)
    try:
        pi_b = device(stack, PI_B)
        eventually(stack, "both Pis online", lambda: statuses() == {PI_A: "online", PI_B: "online"})
        drop(pi_b)
        # ... so that, after the grace period, presence e-mailed about PI_B
        assert len(wait_for_mail(stack, PI_B, GRACE + WAIT)) == 1, stack.log_tail()
        eventually(stack, f"{PI_B} offline", lambda: statuses() == {PI_A: "online", PI_B: "offline"})
        eventually(stack, f"an alert for {PI_B}", lambda: bool(get(api, key, "alerts")["alerts"]))

        # When an operator opens the page at the API's URL, gives the key once and picks the last hour
        problems: list[str] = []
        page = open_last_hour(browser, api, key, problems)
        assert page.title() == "gasmon dashboard"
        assert page.locator("#error").is_hidden()
        assert problems == []

        # Then the NO2 chart has a point per minute that holds a reading, and the 88 line
        assert chart_points(page, "no2") == len(hour.no2_minutes)
        assert page.get_attribute("canvas[data-gas='no2']", "data-points") == str(len(hour.no2_minutes))
        assert threshold_line(page, "no2") == [88, 88]
        assert chart_points(page, "h2") == len(hour.pi1_times)
        # ... the Alarms panel (the stack has an alarm table) replaces the threshold warnings
        assert page.locator("#alarms-section").is_visible() and page.locator("#warnings-section").is_hidden()
        # ... open first: PI_B's CO, critical, since when, its peak and the level crossed
        opened = page.locator("#alarms-open li")
        assert opened.count() == 1
        assert (opened.get_attribute("data-device"), opened.get_attribute("data-gas")) == (PI_B, "co")
        assert opened.get_attribute("data-level") == "critical"
        text = opened.inner_text()
        assert re.search(r"open for 1[12] min", text), text  # since 11 min 20 s before `now`
        assert "peak 240" in text and "critical ≥ 200" in text
        # ... then the over-threshold NO2 reading's alarm on PI_A, closed after 3 minutes, peak 95.50
        closed = page.locator("#alarms-closed li")
        assert closed.count() == 1
        assert (closed.get_attribute("data-device"), closed.get_attribute("data-gas")) == (PI_A, "no2")
        text = closed.inner_text()
        assert "NO₂" in text and "peak 95.50" in text and "warning ≥ 88" in text
        assert re.search(r"until \d\d:\d\d \(3 min\)", text), text
        # ... PI_B offline (connection lost) with its latest CO in red, PI_A online
        assert page.get_attribute(f"tr[data-device='{PI_B}']", "data-status") == "offline"
        assert page.locator(f"tr[data-device='{PI_B}'] .pill").inner_text() == "offline"
        assert "CONNECTION_LOST" in (page.get_attribute(f"tr[data-device='{PI_B}'] .pill", "title") or "")
        assert page.locator(f"tr[data-device='{PI_B}'] .value.over").inner_text() == "CO 240"
        assert page.get_attribute(f"tr[data-device='{PI_A}']", "data-status") == "online"
        assert page.locator(f"tr[data-device='{PI_A}'] .value.over").count() == 0
        # ... and the disconnect alert presence sent, not back yet
        alert = page.locator("#alerts li")
        assert alert.count() == 1 and alert.get_attribute("data-device") == PI_B
        assert "disconnected (CONNECTION_LOST), not back yet" in alert.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-local.png"), full_page=True)
        if os.environ.get("GASMON_UPDATE_SCREENSHOT") == "1":
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        # When PI_A's NO2 crosses the line again, the page lists the new alarm as open by itself
        post(api, device_keys[PI_A], document(PI_A, "2", now, iso_time, no2=101))
        page.wait_for_function(
            f"() => document.querySelector(\"#alarms-open li[data-device='{PI_A}'][data-gas='no2']\") !== null",
            timeout=30_000,
        )
        assert page.locator("#alarms-open li").count() == 2

        # And at phone width nothing runs off the side of the screen; nothing went wrong meanwhile
        no_overflow_at_phone_width(page, "dashboard-local-phone.png")
        assert problems == []
    finally:
        pi_a.disconnect()
        pi_a.loop_stop()
