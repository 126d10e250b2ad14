"""The dashboard in headless Chromium, against the real handlers in-process on 127.0.0.1.

What the local stack cannot show: the page of an API without alarm history (the threshold
warnings list), a seed-style device that presence does not know, and a refused API key. Readings
are POSTed over HTTP the way a Pi posts them, presence is set by the test; the page is then read
the way an operator reads it. Screenshots go to tests/e2e/artifacts/. The dashboard of the stack
as deployed (alarms, real presence) is tested against `gasmon-local` in
test_dashboard_local_stack.py.
"""

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gasmon.query_models import DeviceStatus, DisconnectAlert
from tests.e2e.conftest import (
    ARTIFACTS,
    Hour,
    device_lines,
    document,
    level_line,
    no_overflow_at_phone_width,
    open_dashboard,
    post,
    post_batch,
    refreshed,
    status_strip_at_top_when_scrolled_to,
    wait_for_refreshes,
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
    pi2_dropped_off(dashboard_stack, now)

    # When an operator opens the page and gives the API key once
    problems: list[str] = []
    page = open_dashboard(browser, dashboard_stack.url, dashboard_stack.api_key, problems)

    # Then the first range shown starts where the data starts (pi-2's first reading, 58 min 20 s
    # ago), in buckets of 30 s, not on a 24 h window
    first = min(hour.pi2_times[0], hour.pi1_times[0])
    range_start = datetime.fromisoformat(page.evaluate("document.body.dataset.rangeStart"))
    assert first - timedelta(seconds=90) <= range_start <= first, (range_start, first)
    assert page.get_attribute("[data-range='data']", "aria-pressed") == "true"

    # When the last hour is picked
    refreshed(page, lambda: page.click("[data-range='1h']"))

    # Then NO2 has one line per device, a point per minute holding a reading, and the 88 warning
    # line; no critical line (without an alarm table nothing escalates)
    assert device_lines(page, "no2") == {"pi-1": len(hour.pi1_times), "pi-2": len(hour.pi2_times), "7": 1}
    assert device_lines(page, "h2") == {"pi-1": len(hour.pi1_times)}
    assert level_line(page, "no2", "warning") == [88, 88]
    assert level_line(page, "no2", "critical") == []
    # ... each chart names its unit, and the times say their zone (the deployment's, Asia/Seoul)
    assert page.inner_text("article[data-gas='no2'] h3 .unit") == "(ppb)"
    assert page.inner_text("article[data-gas='co'] h3 .unit") == "(ppm)"
    assert "Asia/Seoul (UTC+9)" in page.inner_text("#zone-label")
    # ... without alarm history the threshold warnings are listed: the over-threshold reading, on pi-1
    assert page.locator("#alarms-section").is_hidden() and page.locator("#warnings-section").is_visible()
    warnings = page.locator("#warnings li")
    assert warnings.count() == 1
    assert "95.50 ppb" in warnings.first.inner_text() and "pi-1" in warnings.first.inner_text()
    # ... pi-2 is offline and pi-1 online; the seed-style group 7, unknown to presence, is unknown
    assert page.get_attribute("tr[data-device='pi-2']", "data-status") == "offline"
    assert page.locator("tr[data-device='pi-2'] .pill").inner_text() == "offline"
    assert page.get_attribute("tr[data-device='pi-1']", "data-status") == "online"
    assert page.get_attribute("tr[data-device='7']", "data-status") == "unknown"
    assert page.locator("tr[data-device='pi-1'] .value.over").count() == 0  # its latest NO2 is back below 88
    # ... the status strip sums it up and names the offline device, as does the tab title
    assert page.inner_text("#status-summary") == "1 of 3 online · 1 warning in range"
    assert page.inner_text("#status-detail") == "offline: pi-2"
    assert page.title() == "1 offline · gasmon"
    # ... and the disconnect alert is listed
    assert "pi-2" in page.locator("#alerts li").first.inner_text()
    assert page.locator("#error").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-warnings.png"), full_page=True)

    # When a new reading arrives, the page shows it by itself within one refresh (10 s)
    refreshes = int(page.evaluate("document.body.dataset.refreshes"))
    post(dashboard_stack.url, dashboard_stack.device_key("pi-1", "2"), document("pi-1", "2", now, no2=50))
    wait_for_refreshes(page, refreshes + 1)
    page.wait_for_function(
        "() => Chart.getChart(document.querySelector(\"canvas[data-gas='no2']\")).data.datasets"
        f".find((d) => d.device === 'pi-1').data.filter((p) => p.y !== null).length === {len(hour.pi1_times) + 1}",
        timeout=30_000,
    )

    # And at phone width nothing runs off the side of the screen, and the status strip stays at
    # the top while the device table is read further down
    no_overflow_at_phone_width(page, "dashboard-warnings-phone.png")
    where = status_strip_at_top_when_scrolled_to(page, "tr[data-device='pi-2']")
    assert where["scrollY"] > 0 and 0 <= where["top"] and where["bottom"] <= 150, where
    assert problems == []


def test_two_minutes_of_data_fill_the_chart_instead_of_making_a_dot(dashboard_stack: Any, browser: Any) -> None:
    # Given a stack that has just started: pi-1 has posted NO2 every 10 s for two minutes
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(seconds=10 * i) for i in range(12, 0, -1)]
    key = dashboard_stack.device_key("pi-1", "2")
    post(dashboard_stack.url, key, [document("pi-1", "2", at, no2=40 + i) for i, at in enumerate(times)])

    # When the page opens on its default range
    page = open_dashboard(browser, dashboard_stack.url, dashboard_stack.api_key)

    # Then the range starts at the first reading, and each 10 s bucket is a point of pi-1's line
    range_start = datetime.fromisoformat(page.evaluate("document.body.dataset.rangeStart"))
    assert times[0] - timedelta(seconds=60) <= range_start <= times[0], (range_start, times[0])
    assert device_lines(page, "no2") == {"pi-1": len(times)}
    # ... and the axis labels are times with seconds, in the deployment's zone
    labels = page.evaluate(
        "Chart.getChart(document.querySelector(\"canvas[data-gas='no2']\")).scales.x.ticks.map((t) => t.label)"
    )
    assert len(labels) >= 2 and all(len(label) == 8 for label in labels), labels
    hours = {(now - timedelta(minutes=m)).astimezone(ZoneInfo("Asia/Seoul")).strftime("%H:") for m in (0, 3)}
    assert {label[:3] for label in labels} <= hours, (labels, hours)


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


# ---- The key never leaves the page's origin ----


class Recorder:
    """A tiny HTTP server on 127.0.0.1 that records every request and welcomes any origin (CORS),
    so that nothing but the page itself could keep a request from reaching it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> None:
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                body = b'{"devices": [], "warnings": [], "alerts": [], "items": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Access-Control-Allow-Private-Network", "true")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_OPTIONS = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="recorder", daemon=True)

    def __enter__(self) -> "Recorder":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp-as-served", "page-code-alone"])
def test_a_crafted_api_link_sends_nothing_to_the_other_server(
    dashboard_stack: Any, browser: Any, bypass_csp: bool
) -> None:
    # Given a browser that holds the viewer key, and another server on 127.0.0.1 that would accept
    # anything from anyone (with `page-code-alone`, the CSP is switched off: only app.js guards)
    post(dashboard_stack.url, dashboard_stack.device_key("pi-1", "2"), document("pi-1", "2", datetime.now(UTC), no2=50))
    with Recorder() as elsewhere:
        context = browser.new_context(bypass_csp=bypass_csp)
        page = context.new_page()
        page.goto(f"{dashboard_stack.url}#key={dashboard_stack.api_key}")
        wait_for_refreshes(page, 1)

        # When the user follows a crafted link naming the other server as the API, and the page refreshes
        page.goto(f"{dashboard_stack.url}?api={elsewhere.url}")
        wait_for_refreshes(page, 2)
        page.click("[data-range='1h']")
        wait_for_refreshes(page, 3)

        # Then the other server heard nothing at all, and the page still shows its own API's data
        assert elsewhere.requests == []
        assert page.locator("#error").is_hidden()
        assert page.locator("tr[data-device='pi-1']").count() == 1
        assert page.evaluate("localStorage.getItem('gasmon.apiBase')") is None
        context.close()


def test_the_served_csp_blocks_any_other_origin(dashboard_stack: Any, browser: Any) -> None:
    # Given the page as served, and another server on 127.0.0.1
    with Recorder() as elsewhere:
        page = browser.new_page()
        page.goto(dashboard_stack.url)
        # When a script on the page (an injected one, say) tries to send the key elsewhere
        outcome = page.evaluate(
            """async (url) => {
                try { await fetch(url, {headers: {"x-api-key": "k"}}); return "sent"; }
                catch (error) { return "blocked"; }
            }""",
            elsewhere.url,
        )
        # Then the browser refuses, and the other server heard nothing
        assert outcome == "blocked"
        assert elsewhere.requests == []


def test_a_viewer_link_stores_the_key_and_leaves_no_fragment(dashboard_stack: Any, browser: Any) -> None:
    # Given a reading, and a fresh browser given the viewer link `<dashboard>/#key=<key>`
    post(dashboard_stack.url, dashboard_stack.device_key("pi-1", "2"), document("pi-1", "2", datetime.now(UTC), no2=50))
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))

    # When it is opened
    page.goto(f"{dashboard_stack.url}#key={dashboard_stack.api_key}")
    wait_for_refreshes(page, 1)

    # Then the page shows the data without asking for the key, the key is kept for this origin,
    # and the address bar no longer holds it
    assert not page.locator("#settings").evaluate("dialog => dialog.open")
    assert page.locator("tr[data-device='pi-1']").count() == 1
    assert page.evaluate("localStorage.getItem('gasmon.apiKey')") == dashboard_stack.api_key
    assert page.evaluate("location.hash") == ""
    assert page.url == dashboard_stack.url

    # And the key dialog says where a key comes from
    page.click("#settings-button")
    dialog = page.inner_text("#settings")
    assert "gasmon-admin --stack STACK viewer YOUR-NAME" in dialog
    assert "gasmon-admin --local viewer YOUR-NAME" in dialog
    assert "make local" in dialog and "dashboard http://127.0.0.1:…/#key=…" in dialog
    assert problems == []
    context.close()
