"""The dashboard in headless Chromium, against the real handlers in-process on 127.0.0.1.

What the local stack cannot show: the page of an API without alarm history (the threshold
warnings list), a seed-style device that presence does not know, and a refused API key. Readings
are POSTed over HTTP the way a Pi posts them, presence is set by the test; the page is then read
the way an operator reads it. Screenshots go to tests/e2e/artifacts/. The dashboard of the stack
as deployed (alarms, real presence) is tested against `gasmon-local` in
test_dashboard_local_stack.py.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.query_models import DeviceStatus, DisconnectAlert
from tests.e2e.conftest import (
    ARTIFACTS,
    Hour,
    chart_points,
    document,
    no_overflow_at_phone_width,
    open_last_hour,
    post,
    post_batch,
    threshold_line,
)

pytestmark = pytest.mark.e2e


def pi2_dropped_off(stack: Any, now: datetime) -> None:
    """Presence says pi-1 is online and pi-2 dropped off 3 minutes ago (and was alerted on)."""
    stack.presence.states = {
        "pi-1": DeviceStatus(client_id="pi-1", state="online", since=now - timedelta(hours=2)),
        "pi-2": DeviceStatus(
            client_id="pi-2", state="offline", since=now - timedelta(minutes=3), reason="CONNECTION_LOST"
        ),
    }
    stack.presence.alerts = [
        DisconnectAlert(
            client_id="pi-2",
            disconnected_at=now - timedelta(minutes=3),
            alerted_at=now - timedelta(minutes=2),
            reason="CONNECTION_LOST",
        )
    ]


def test_dashboard_shows_posted_readings_warnings_and_an_offline_device(dashboard_stack: Any, browser: Any) -> None:
    # Given an hour of readings from two Pis and a seed-style document (one NO2 reading over the
    # 88 line), no alarm table, and presence saying pi-2 dropped off 3 minutes ago
    now = datetime.now(UTC).replace(microsecond=0)
    hour = Hour(now)
    answer = post_batch(dashboard_stack.url, dashboard_stack.device_key, hour.batch)
    assert answer["rejected"] == 0 and answer["warnings"] == 1
    pi1_times, no2_minutes = hour.pi1_times, hour.no2_minutes
    pi2_dropped_off(dashboard_stack, now)

    # When an operator opens the page, gives the API key once and picks the last hour
    problems: list[str] = []
    page = open_last_hour(browser, dashboard_stack.url, dashboard_stack.api_key, problems)

    # Then the NO2 chart has a point per minute that holds a reading, and the 88 threshold line
    assert chart_points(page, "no2") == len(no2_minutes)
    assert page.get_attribute("canvas[data-gas='no2']", "data-points") == str(len(no2_minutes))
    assert threshold_line(page, "no2") == [88, 88]
    assert page.get_attribute("canvas[data-gas='h2']", "data-points") == str(len(pi1_times))
    # ... without alarm history the threshold warnings are listed: the over-threshold reading, on pi-1
    assert page.locator("#alarms-section").is_hidden() and page.locator("#warnings-section").is_visible()
    warnings = page.locator("#warnings li")
    assert warnings.count() == 1
    assert "95.50" in warnings.first.inner_text() and "pi-1" in warnings.first.inner_text()
    # ... pi-2 is offline and pi-1 online; the seed-style group 7, unknown to presence, is unknown
    assert page.get_attribute("tr[data-device='pi-2']", "data-status") == "offline"
    assert page.locator("tr[data-device='pi-2'] .pill").inner_text() == "offline"
    assert page.get_attribute("tr[data-device='pi-1']", "data-status") == "online"
    assert page.get_attribute("tr[data-device='7']", "data-status") == "unknown"
    assert page.locator("tr[data-device='pi-1'] .value.over").count() == 0  # its latest NO2 is back below 88
    # ... and the disconnect alert is listed
    assert "pi-2" in page.locator("#alerts li").first.inner_text()
    assert page.locator("#error").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-warnings.png"), full_page=True)

    # When a new reading arrives, the page shows it by itself within one refresh (10 s)
    refreshes = int(page.evaluate("document.body.dataset.refreshes"))
    post(dashboard_stack.url, dashboard_stack.device_key("pi-1", "2"), document("pi-1", "2", now, no2=50))
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes) > {refreshes}", timeout=30_000)
    page.wait_for_function(
        f"() => document.querySelector(\"canvas[data-gas='no2']\").dataset.points === '{len(no2_minutes) + 1}'",
        timeout=30_000,
    )

    # And at phone width nothing runs off the side of the screen
    no_overflow_at_phone_width(page, "dashboard-warnings-phone.png")
    assert problems == []


def test_a_wrong_api_key_asks_for_the_key_again(dashboard_stack: Any, browser: Any) -> None:
    # Given a browser that kept a key the API does not accept
    page = browser.new_page()
    page.goto(dashboard_stack.url)
    page.evaluate("localStorage.setItem('gasmon.apiKey', 'not-the-key')")

    # When the page loads
    page.reload()

    # Then it asks for the key again and says why
    page.wait_for_selector("#settings[open]")
    assert "refused the key (HTTP 403)" in page.inner_text("#settings-problem")
