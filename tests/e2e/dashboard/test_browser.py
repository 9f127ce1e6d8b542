"""The dashboard in a real headless Chromium (Debian's, driven by playwright): it loads, updates live, and guards
promote with the token. With ``UPDATE_SCREENSHOT=1`` it also refreshes ``docs/dashboard.png`` for the README
(otherwise the screenshot goes to a temporary directory, so a test run leaves the checkout clean).

The rollouts come from `headway.dashboard.sim_source` (the real engine on the fakes, virtual time at 40x), so the
test needs nothing but the browser binary.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, expect

from headway.dashboard.app import create_app
from headway.dashboard.sim_source import SimSource, demo_rollouts
from tests.e2e.browser import confirm, open_page

TOKEN = "e2e-secret-token"
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "dashboard.png"


@dataclass
class Dashboard:
    url: str
    source: SimSource


@pytest_asyncio.fixture
async def dashboard() -> AsyncIterator[Dashboard]:
    source = SimSource(demo_rollouts(), speed=40.0, tick_seconds=0.1)
    await source.start()
    runner = web.AppRunner(create_app(source, token=TOKEN, heartbeat_seconds=2.0), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Dashboard(f"http://127.0.0.1:{port}/", source)
    await source.close()
    await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_list_page_counts_phases_and_filters(dashboard: Dashboard, browser: Browser) -> None:
    page = await open_page(browser, dashboard.url)
    await expect(page.locator("tbody tr")).to_have_count(3)
    await expect(page.locator("#counts")).to_contain_text("Progressing")
    await page.fill("#filter", "payments")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("payments")
    await page.click("text=payments")
    await expect(page.locator("h1")).to_contain_text("shop/payments")


@pytest.mark.asyncio
@pytest.mark.slow
async def test_weight_updates_live_without_reload(dashboard: Dashboard, browser: Browser, tmp_path: Path) -> None:
    page = await open_page(browser, dashboard.url + "rollouts/shop/checkout")
    await expect(page.locator("#weight")).to_have_text(re.compile(r"^\d+%$"))
    first = await page.locator("#weight").text_content()
    await page.evaluate("window.__notReloaded = true")
    changed = "(first) => document.querySelector('#weight').textContent !== first"
    await page.wait_for_function(changed, arg=first, timeout=20_000)
    assert await page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating live"
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator("svg[aria-label='canary weight over time'] path").first).to_be_visible()
    # The analysis run's measurements and the judge's estimate are charted.
    await expect(page.locator(".judge").first).to_contain_text("ratio", timeout=20_000)
    # The picture for the README: mid-rollout, paused at a step with traffic split and the judge's evidence in.
    mid_rollout = "['30%', '60%'].includes(document.querySelector('#weight').textContent)"
    await page.wait_for_function(f"{mid_rollout} && document.querySelector('#phase').textContent === 'Paused'")
    shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


@pytest.mark.asyncio
@pytest.mark.slow
async def test_promote_is_refused_without_the_token_and_works_with_it(dashboard: Dashboard, browser: Browser) -> None:
    page = await open_page(browser, dashboard.url + "rollouts/shop/payments")
    await expect(page.locator("#phase")).to_have_text("Paused")
    await expect(page.locator("#weight")).to_have_text("20%")

    await confirm(page, "promote", "")
    await expect(page.locator("#action-result")).to_contain_text("refused (401)")
    await confirm(page, "promote", "wrong-token")
    await expect(page.locator("#action-result")).to_contain_text("refused (401)")
    view = await dashboard.source.get_rollout("payments", "shop")
    assert (view.phase, view.canary_weight) == ("Paused", 20), "a refused promote must change nothing"

    await confirm(page, "promote", TOKEN)
    await expect(page.locator("#action-result")).to_contain_text("promote recorded for shop/payments")
    await expect(page.locator("#weight")).to_have_text("50%")
    view = await dashboard.source.get_rollout("payments", "shop")
    assert view.canary_weight == 50
