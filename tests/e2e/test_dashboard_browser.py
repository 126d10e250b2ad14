"""The dashboard in headless Chromium, against the real handlers on 127.0.0.1.

Readings are POSTed over HTTP the way a Pi posts them; the page is then read the way an
operator reads it: charts, device table, warnings, disconnect alerts. The test saves its
screenshots under tests/e2e/artifacts/; `GASMON_UPDATE_SCREENSHOT=1` also refreshes
docs/dashboard.png, the one the README shows.
"""

import json
import math
import os
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


def test_dashboard_shows_posted_readings_warnings_and_an_offline_device(dashboard_stack: Any, browser: Any) -> None:
    # Given two Pis posting for the last hour (pi-1 every minute with one NO2 reading over the
    # 88 line, pi-2 every minute until 10 minutes ago), a seed-style document without a device id, and presence
    # saying pi-2 dropped off 3 minutes ago
    now = datetime.now(UTC).replace(microsecond=0)
    pi1_times = [now - timedelta(minutes=minutes) for minutes in range(58, 0, -1)]
    pi2_times = [now - timedelta(minutes=minutes, seconds=20) for minutes in range(58, 9, -1)]
    seed_at = now - timedelta(seconds=150)
    batch = [
        document(
            "pi-1", "2", at, no2=50 + 12 * math.sin(i / 5), co=4 + 2 * math.sin(i / 7), c2h5oh=180 + i, h2=420 + 3 * i
        )
        for i, at in enumerate(pi1_times)
    ]
    batch[38]["no2"]["value"] = "95.50"
    batch += [document("pi-2", "3", at, no2=30 + 4 * math.sin(i / 4), co=11) for i, at in enumerate(pi2_times)]
    batch.append(document(None, "7", seed_at, no2=20))
    answer = post(dashboard_stack.url, dashboard_stack.api_key, batch)
    assert answer["rejected"] == 0 and answer["warnings"] == 1
    no2_minutes = {int(at.timestamp()) // 60 for at in [*pi1_times, *pi2_times, seed_at]}
    dashboard_stack.presence.states = {
        "pi-1": DeviceStatus(client_id="pi-1", state="online", since=now - timedelta(hours=2)),
        "pi-2": DeviceStatus(
            client_id="pi-2", state="offline", since=now - timedelta(minutes=3), reason="CONNECTION_LOST"
        ),
    }
    dashboard_stack.presence.alerts = [
        DisconnectAlert(
            client_id="pi-2",
            disconnected_at=now - timedelta(minutes=3),
            alerted_at=now - timedelta(minutes=2),
            reason="CONNECTION_LOST",
        )
    ]

    # When an operator opens the page, gives the API key once and picks the last hour
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(dashboard_stack.url)
    page.wait_for_selector("#settings[open]")
    page.fill("#api-key", dashboard_stack.api_key)
    page.click("#settings button[type=submit]")
    page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1", timeout=15_000)
    page.click("[data-range='1h']")
    page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 2", timeout=15_000)

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
    # ... the over-threshold reading is the warning, on pi-1
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
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if os.environ.get("GASMON_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    # When a new reading arrives, the page shows it by itself within one refresh (10 s)
    refreshes = int(page.evaluate("document.body.dataset.refreshes"))
    post(dashboard_stack.url, dashboard_stack.api_key, document("pi-1", "2", now, no2=50))
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes) > {refreshes}", timeout=15_000)
    page.wait_for_function(
        f"() => document.querySelector(\"canvas[data-gas='no2']\").dataset.points === '{len(no2_minutes) + 1}'",
        timeout=12_000,
    )

    # And at phone width nothing runs off the side of the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)


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
