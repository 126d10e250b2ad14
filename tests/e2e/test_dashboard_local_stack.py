"""The dashboard in headless Chromium against `gasmon-local`, started as a user starts `make local`.

Nothing is faked: gasmon's template.yaml with its real functions, the SQLite reading store, the
alarm table (moto DynamoDB) ingest writes and the query function reads, and presence fed by the
broker's lifecycle events. Two Pis post an hour of readings over HTTP and connect over MQTT; one
loses its connection. The page is then read the way an operator reads it. The test saves its
screenshots to tests/e2e/artifacts/; with `GASMON_UPDATE_SCREENSHOT=1` (`make screenshots`) it also
rewrites docs/dashboard-desktop.png (1400x1000) and docs/dashboard-phone.png (390x844).
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
    DESKTOP_SCREENSHOT,
    PHONE,
    PHONE_SCREENSHOT,
    WAIT,
    Hour,
    device,
    device_lines,
    document,
    drop,
    get,
    iso_time,
    level_line,
    no_overflow_at_phone_width,
    open_last_hour,
    post,
    post_batch,
    provision,
    refreshed,
    status_strip_at_top_when_scrolled_to,
    wait_for_mail,
)

pytestmark = pytest.mark.e2e

GRACE = 2
PI_A = "e2e-pi-a"  # stays connected
PI_B = "e2e-pi-b"  # its CO goes critical, then it drops off
# The browser's Notification API, recording instead of showing: permission is asked on a click
# and granted, and every notification the page makes is kept in `window.notified`.
NOTIFICATIONS = """
window.notified = [];
window.Notification = class {
  static permission = "default";
  static async requestPermission() { Notification.permission = "granted"; return "granted"; }
  constructor(title, options) { window.notified.push({ title, ...options }); }
};
"""


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

        # When an operator in Berlin opens the page at the API's URL, gives the key once and picks the last hour
        problems: list[str] = []
        page = open_last_hour(browser, api, key, problems, init_script=NOTIFICATIONS, timezone_id="Europe/Berlin")
        assert page.locator("#error").is_hidden()
        assert problems == []

        # Then the status strip at the top says what is wrong: one of two online, PI_B's CO alarm
        # open and critical, PI_B offline; so does the tab title
        assert page.inner_text("#status-summary") == "1 of 2 online · 1 alarm open"
        detail = page.inner_text("#status-detail")
        assert detail == f"CO critical on {PI_B} (240 ppm) · offline: {PI_B}", detail
        assert page.get_attribute("#status", "data-state") == "critical"
        assert page.title() == f"(1) CO critical on {PI_B} · gasmon"
        # ... NO2 has one line per device, a point per minute holding a reading, with its unit,
        # the 88 warning line and the 1000 critical line (above the chart at this scale: it says so)
        assert device_lines(page, "no2") == {PI_A: len(hour.pi1_times), PI_B: len(hour.pi2_times)}
        assert device_lines(page, "h2") == {PI_A: len(hour.pi1_times)}
        assert page.inner_text("article[data-gas='no2'] h3 .unit") == "(ppb)"
        assert level_line(page, "no2", "warning") == [88, 88]
        assert level_line(page, "no2", "critical") == [1000, 1000]
        assert "critical 1000 ppb (above the chart)" in page.inner_text("article[data-gas='no2'] .levels")
        # ... CO's critical 200 ppm line is drawn beside its 240 peak
        assert level_line(page, "co", "critical") == [200, 200]
        assert page.inner_text("article[data-gas='co'] .levels") == "warning 35 ppm · critical 200 ppm"
        # ... the times are the deployment's (Asia/Seoul), and the viewer's own zone is offered
        assert page.inner_text("#zone-label") == "Times in Asia/Seoul (UTC+9)"
        assert page.inner_text("#zone-toggle") == "Use my time (Europe/Berlin)"
        # ... the Alarms panel (the stack has an alarm table) replaces the threshold warnings
        assert page.locator("#alarms-section").is_visible() and page.locator("#warnings-section").is_hidden()
        # ... open first: PI_B's CO, critical, since when, its peak and the level crossed
        opened = page.locator("#alarms-open li")
        assert opened.count() == 1
        assert (opened.get_attribute("data-device"), opened.get_attribute("data-gas")) == (PI_B, "co")
        assert opened.get_attribute("data-level") == "critical"
        text = opened.inner_text()
        assert re.search(r"open for 1[12] min", text), text  # since 11 min 20 s before `now`
        assert "peak 240 ppm" in text and "critical ≥ 200 ppm" in text
        # ... then the over-threshold NO2 reading's alarm on PI_A, closed after 3 minutes, peak 95.50
        closed = page.locator("#alarms-closed li")
        assert closed.count() == 1
        assert (closed.get_attribute("data-device"), closed.get_attribute("data-gas")) == (PI_A, "no2")
        text = closed.inner_text()
        assert "NO₂" in text and "peak 95.50 ppb" in text and "warning ≥ 88 ppb" in text
        assert re.search(r"until \d\d:\d\d \(3 min\)", text), text
        # ... PI_B offline (connection lost) with its latest CO in red, PI_A online
        assert page.get_attribute(f"tr[data-device='{PI_B}']", "data-status") == "offline"
        assert page.locator(f"tr[data-device='{PI_B}'] .pill").inner_text() == "offline"
        assert "CONNECTION_LOST" in (page.get_attribute(f"tr[data-device='{PI_B}'] .pill", "title") or "")
        assert page.locator(f"tr[data-device='{PI_B}'] .value.over").inner_text() == "CO 240 ppm"
        assert page.get_attribute(f"tr[data-device='{PI_A}']", "data-status") == "online"
        assert page.locator(f"tr[data-device='{PI_A}'] .value.over").count() == 0
        # ... and the disconnect alert presence sent, not back yet
        alert = page.locator("#alerts li")
        assert alert.count() == 1 and alert.get_attribute("data-device") == PI_B
        assert "disconnected (CONNECTION_LOST), not back yet" in alert.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-local.png"), full_page=True)
        if os.environ.get("GASMON_UPDATE_SCREENSHOT") == "1":
            page.screenshot(path=str(DESKTOP_SCREENSHOT), full_page=True)

        # When the operator picks PI_A in the device selector
        refreshed(page, lambda: page.select_option("#device-select", PI_A))
        # Then the charts show PI_A's line alone, with its min-max band
        assert device_lines(page, "no2") == {PI_A: len(hour.pi1_times)}
        assert device_lines(page, "co") == {PI_A: len(hour.pi1_times)}
        roles = page.evaluate(
            "Chart.getChart(document.querySelector(\"canvas[data-gas='no2']\")).data.datasets.map((d) => d.role)"
        )
        assert roles == ["device", "max", "min", "warning", "critical"]
        # ... and back to every device
        refreshed(page, lambda: page.select_option("#device-select", ""))
        assert set(device_lines(page, "no2")) == {PI_A, PI_B}

        # When the operator switches to their own time zone, the label says so
        refreshed(page, lambda: page.click("#zone-toggle"))
        assert page.inner_text("#zone-label").startswith("Times in Europe/Berlin (UTC+1)")
        assert page.inner_text("#zone-toggle") == "Use site time (Asia/Seoul)"

        # When the operator asks for notifications (the browser asks for permission on that click)
        page.click("#notify-button")
        page.wait_for_function("() => document.querySelector('#notify-button').textContent.includes('on')")
        # ... and PI_A's NO2 crosses the line again, the page lists the new alarm as open by itself
        post(api, device_keys[PI_A], document(PI_A, "2", now, iso_time, no2=101))
        page.wait_for_function(
            f"() => document.querySelector(\"#alarms-open li[data-device='{PI_A}'][data-gas='no2']\") !== null",
            timeout=30_000,
        )
        assert page.locator("#alarms-open li").count() == 2
        # ... and one notification names it (none for the alarm already open when the page loaded)
        notified = page.evaluate("window.notified")
        assert [n["title"] for n in notified] == [f"gasmon: NO₂ warning on {PI_A}"], notified
        assert notified[0]["body"].startswith("peak 101 ppb since ")
        assert page.inner_text("#status-summary") == "1 of 2 online · 2 alarms open"

        # When the operator switches back, the site's zone is shown again
        refreshed(page, lambda: page.click("#zone-toggle"))
        assert page.inner_text("#zone-label") == "Times in Asia/Seoul (UTC+9)"

        # And on a phone (390x844) nothing runs off the side of the screen, and the status strip
        # stays at the top while the alarms further down are read
        no_overflow_at_phone_width(page, "dashboard-local-phone.png")
        page.evaluate("window.scrollTo(0, 0)")
        if os.environ.get("GASMON_UPDATE_SCREENSHOT") == "1":
            page.screenshot(path=str(PHONE_SCREENSHOT))
        where = status_strip_at_top_when_scrolled_to(page, "#alarms-closed")
        assert where["scrollY"] > 800 and 0 <= where["top"] and where["bottom"] <= 150, where
        assert page.viewport_size == PHONE
        assert problems == []
    finally:
        pi_a.disconnect()
        pi_a.loop_stop()
