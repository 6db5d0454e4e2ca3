"""The dashboard in a real browser: Debian's chromium, driven by Playwright (never `playwright install`), against a real
gateway. It logs in through the form, reads the overview, sees a canary started through the ops API appear without
reloading, checks the session cookie's flags, opens a version's page, and saves a screenshot (path printed; also
copied to /work/ui-screenshot.png when /work exists)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.ui.conftest import traffic, ui_gateway

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_COPY = Path("/work/ui-screenshot.png")
DEADLINE_MS = 60_000
STEADY_SLO = {"max_latency_ratio": 50, "breaches_to_rollback": 1000}  # a loaded machine's jitter rolls nothing back

pytestmark = pytest.mark.e2e

if not CHROMIUM.exists():
    pytest.skip(f"NO BROWSER: {CHROMIUM} is missing, so the dashboard's browser test did not run (apt-get install "
                "chromium; `make install` does it as root)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="NO PLAYWRIGHT: pip install playwright (the dev extra)")


@pytest.fixture
def browser(tmp_path):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            viewport={"width": 1440, "height": 900},
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-dev-shm-usage"])
        context.set_default_timeout(DEADLINE_MS)
        try:
            yield context
        finally:
            context.close()


def test_the_dashboard_in_chromium(browser, tmp_path) -> None:
    expect = sync_api.expect
    with ui_gateway(tmp_path / "gateway") as ops, traffic(ops.url):
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        outside = []
        page.on("request", lambda request: None if request.url.startswith(ops.url) else outside.append(request.url))

        page.goto(ops.url + "/ui")
        expect(page.locator("#login")).to_be_visible()
        page.fill("#token", "not-a-token")
        page.click("#login button")
        expect(page.locator(".error")).to_contain_text("not valid")
        page.fill("#token", ops.secrets["read"])
        page.click("#login button")
        page.wait_for_url(ops.url + "/ui")

        [cookie] = [c for c in browser.cookies() if c["name"] == "onnxgate_ui"]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
        assert page.evaluate("document.cookie") == "", "the session is out of the page's scripts' reach"

        production = page.locator('tr[data-model="iris"][data-environment="production"]')
        expect(production.locator("td.stable")).to_contain_text("v1.0.0")
        expect(production.locator("td.canary")).to_contain_text("none")
        expect(page.locator(".who")).to_contain_text("read-bot")
        expect(page.locator("#audit")).to_contain_text("deploy")

        started = ops.client("deploy").post(
            "/admin/v1/models/iris/environments/production/canary",
            json={"version": "v2.0.0", "steps": [25, 50, 100], "interval_s": 3600, "reason": "browser test canary",
                  "slo": STEADY_SLO})
        assert started.status_code == 200, started.text
        # no reload: the page's own refresh brings the canary in
        expect(production.locator("td.canary")).to_contain_text("v2.0.0 at 25%", timeout=DEADLINE_MS)
        expect(production.locator("td.canary")).to_contain_text("next 50% → 100%")
        expect(page.locator("#audit")).to_contain_text("browser test canary")
        expect(production.locator("td.judge svg polyline.line-canary").first).to_be_attached(timeout=DEADLINE_MS)
        expect(production.locator("td.last-verdict .verdict")).to_have_text(
            re.compile("healthy|inconclusive|breach"), timeout=DEADLINE_MS)
        expect(page.locator("#refresh-state")).to_have_text("live")
        page.wait_for_function(  # a few judged windows in the chart before the screenshot
            "() => (document.querySelector('tr[data-environment=production] polyline.line-canary')"
            "?.getAttribute('points') || '').trim().split(' ').length >= 4", timeout=DEADLINE_MS)

        screenshot = tmp_path / "ui-overview.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"\nscreenshot of the overview: {screenshot}")
        if SCREENSHOT_COPY.parent.is_dir():
            shutil.copyfile(screenshot, SCREENSHOT_COPY)
            print(f"copied to {SCREENSHOT_COPY}")

        production.locator("td.canary a.version").click()
        page.wait_for_url(ops.url + "/ui/models/iris/versions/v2.0.0")
        expect(page.locator("#summary")).to_contain_text("production: canary 25%")
        expect(page.locator("#signature")).to_contain_text("probabilities")
        expect(page.locator("#parity")).to_contain_text("passed")
        expect(page.locator("#history")).to_contain_text("browser test canary")
        version_shot = tmp_path / "ui-version.png"
        page.screenshot(path=str(version_shot), full_page=True)
        print(f"screenshot of the version page: {version_shot}")

        page.click(".logout button")
        page.wait_for_url(ops.url + "/ui/login")
        assert not [c for c in browser.cookies() if c["name"] == "onnxgate_ui"]
        page.goto(ops.url + "/ui")
        expect(page.locator("#login")).to_be_visible()
        assert not failed, failed
        assert not outside, f"the dashboard fetched from elsewhere: {outside}"
