"""The dashboard in headless Chromium, against the real handlers on 127.0.0.1.

Readings are POSTed over HTTP the way a Pi posts them; the page is then read the way an
operator reads it: charts, device table, warnings or alarms, disconnect alerts. The tests save
their screenshots under tests/e2e/artifacts/; `GASMON_UPDATE_SCREENSHOT=1` also refreshes
docs/dashboard.png, the one the README shows (the stack with alarms, as deployed).
"""

import json
import math
import os
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gasmon.models import DeviceStatus, DisconnectAlert

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
SEOUL = ZoneInfo("Asia/Seoul")
SEED_GPS = "37.61002501514269, 126.99636868892937"


def seed_time(moment: datetime) -> str:
    """A `createdtime` the way the seed's Pi writes it: Seoul wall time, no zone."""
    return moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M:%S")


def document(deviceid: str | None, groupid: str, at: datetime, **values: float) -> dict[str, Any]:
    sensors = {"co": ("0005", "8"), "no2": ("0006", "9"), "c2h5oh": ("0007", "27"), "h2": ("0008", "30")}
    doc: dict[str, Any] = {"groupid": groupid, "gps": SEED_GPS}
    if deviceid:
        doc["deviceid"] = deviceid
    for gas, value in values.items():
        sensorid, sensortype = sensors[gas]
        doc[gas] = {
            "sensorid": sensorid,
            "sensortype": sensortype,
            "value": f"{value:.2f}",
            "createdtime": seed_time(at),
        }
    return doc


def post(url: str, key: str, body: Any) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "readings",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-api-key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Hour:
    """An hour of readings from two Pis and a seed-style document, ending `now`.

    pi-1 posts every minute with one NO2 reading over the 88 line (95.50, 20 minutes ago);
    pi-2 posts every minute until 10 minutes ago; group 7 posts one seed document without a
    device id. `co_spike` makes pi-2's last two CO readings 60 and 240 (warning 35, critical 200).
    """

    def __init__(self, now: datetime, co_spike: bool = False) -> None:
        self.now = now
        self.pi1_times = [now - timedelta(minutes=minutes) for minutes in range(58, 0, -1)]
        self.pi2_times = [now - timedelta(minutes=minutes, seconds=20) for minutes in range(58, 9, -1)]
        self.seed_at = now - timedelta(seconds=150)
        batch = [
            document(
                "pi-1",
                "2",
                at,
                no2=50 + 12 * math.sin(i / 5),
                co=4 + 2 * math.sin(i / 7),
                c2h5oh=180 + i,
                h2=420 + 3 * i,
            )
            for i, at in enumerate(self.pi1_times)
        ]
        batch[38]["no2"]["value"] = "95.50"
        pi2 = [document("pi-2", "3", at, no2=30 + 4 * math.sin(i / 4), co=11) for i, at in enumerate(self.pi2_times)]
        if co_spike:
            pi2[-2]["co"]["value"], pi2[-1]["co"]["value"] = "60.00", "240.00"
        self.batch = [*batch, *pi2, document(None, "7", self.seed_at, no2=20)]
        self.no2_minutes = {int(at.timestamp()) // 60 for at in [*self.pi1_times, *self.pi2_times, self.seed_at]}


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


def open_last_hour(browser: Any, stack: Any) -> Any:
    """Open the page, give it the API key once, pick the last hour; wait for that refresh."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(stack.url)
    page.wait_for_selector("#settings[open]")
    page.fill("#api-key", stack.api_key)
    page.click("#settings button[type=submit]")
    page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1", timeout=15_000)
    page.click("[data-range='1h']")
    page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 2", timeout=15_000)
    return page


def no_overflow_at_phone_width(page: Any, name: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_dashboard_shows_posted_readings_warnings_and_an_offline_device(dashboard_stack: Any, browser: Any) -> None:
    # Given an hour of readings from two Pis and a seed-style document (one NO2 reading over the
    # 88 line), no alarm table, and presence saying pi-2 dropped off 3 minutes ago
    now = datetime.now(UTC).replace(microsecond=0)
    hour = Hour(now)
    answer = post(dashboard_stack.url, dashboard_stack.api_key, hour.batch)
    assert answer["rejected"] == 0 and answer["warnings"] == 1
    pi1_times, no2_minutes = hour.pi1_times, hour.no2_minutes
    pi2_dropped_off(dashboard_stack, now)

    # When an operator opens the page, gives the API key once and picks the last hour
    page = open_last_hour(browser, dashboard_stack)

    # Then the NO2 chart has a point per minute that holds a reading, and the 88 threshold line
    no2_points = page.evaluate(
        "Chart.getChart(document.querySelector(\"canvas[data-gas='no2']\")).data.datasets[0].data"
        ".filter((p) => p.y !== null).length"
    )
    assert no2_points == len(no2_minutes)
    assert page.get_attribute("canvas[data-gas='no2']", "data-points") == str(len(no2_minutes))
    threshold = page.evaluate(
        "Chart.getChart(document.querySelector(\"canvas[data-gas='no2']\")).data.datasets[3].data.map((p) => p.y)"
    )
    assert threshold == [88, 88]
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
    post(dashboard_stack.url, dashboard_stack.api_key, document("pi-1", "2", now, no2=50))
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes) > {refreshes}", timeout=15_000)
    page.wait_for_function(
        f"() => document.querySelector(\"canvas[data-gas='no2']\").dataset.points === '{len(no2_minutes) + 1}'",
        timeout=12_000,
    )

    # And at phone width nothing runs off the side of the screen
    no_overflow_at_phone_width(page, "dashboard-warnings-phone.png")


def test_dashboard_lists_open_alarms_first_then_closed_ones(dashboard_stack_with_alarms: Any, browser: Any) -> None:
    stack = dashboard_stack_with_alarms
    # Given the same hour with alarms on: pi-1's NO2 95.50 opened an alarm that cleared (the
    # readings after it are below the 79.2 clear line), and pi-2's CO went to 60 then 240 just
    # before it dropped off, so its CO alarm is open, escalated to critical
    now = datetime.now(UTC).replace(microsecond=0)
    hour = Hour(now, co_spike=True)
    answer = post(stack.url, stack.api_key, hour.batch)
    assert answer["rejected"] == 0
    events = sorted((m["device"], m["gas"], m["event"]) for _, m in stack.publisher.messages)
    assert events == [
        ("pi-1", "no2", "clear"),
        ("pi-1", "no2", "open"),
        ("pi-2", "co", "escalate"),
        ("pi-2", "co", "open"),
    ]
    pi2_dropped_off(stack, now)

    # When an operator opens the page for the last hour
    page = open_last_hour(browser, stack)

    # Then the alarm panel replaces the threshold warnings list
    assert page.locator("#alarms-section").is_visible() and page.locator("#warnings-section").is_hidden()
    # ... the open alarm comes first: CO critical on pi-2, since when, its peak and the level crossed
    opened = page.locator("#alarms-open li")
    assert opened.count() == 1
    assert (opened.get_attribute("data-device"), opened.get_attribute("data-gas")) == ("pi-2", "co")
    assert opened.get_attribute("data-level") == "critical"
    text = opened.inner_text()
    assert "CO" in text and "pi-2" in text
    assert re.search(r"open for 1[12] min", text), text  # since 11 min 20 s before the page loaded
    assert "peak 240" in text and "critical ≥ 200" in text
    # ... then the closed one: NO2 warning on pi-1, from start to end (3 min), peak 95.50 over 88
    closed = page.locator("#alarms-closed li")
    assert closed.count() == 1
    assert (closed.get_attribute("data-device"), closed.get_attribute("data-state")) == ("pi-1", "closed")
    text = closed.inner_text()
    assert "NO₂" in text and "peak 95.50" in text and "warning ≥ 88" in text
    assert re.search(r"until \d\d:\d\d \(3 min\)", text), text
    page_order = page.evaluate(
        "[...document.querySelectorAll('#alarms-section li')].map((li) => li.dataset.state).join(',')"
    )
    assert page_order == "open,closed"
    assert page.locator("#error").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if os.environ.get("GASMON_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    # When pi-1's NO2 crosses the line again, the new alarm is listed as open within one refresh
    post(stack.url, stack.api_key, document("pi-1", "2", now, no2=101))
    page.wait_for_function(
        "() => document.querySelector(\"#alarms-open li[data-device='pi-1'][data-gas='no2']\") !== null",
        timeout=15_000,
    )
    assert page.locator("#alarms-open li").count() == 2

    # And at phone width the alarm panel still fits the screen
    no_overflow_at_phone_width(page, "dashboard-phone.png")


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
