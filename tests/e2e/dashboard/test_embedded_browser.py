"""The dashboard a REAL embedded instance serves (``/dashboard/`` on its API port), in Debian's headless Chromium.

A daemon process runs the sample app as local processes behind the built-in proxy; the page must follow a live
rollout (weight moves without a reload when ``set image`` starts a canary) and promote must be refused without the
instance's token and work with it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from tests.e2e.browser import confirm, open_page
from tests.e2e.embedded.harness import DaemonProcess, manifest, running_daemon


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """A real embedded daemon (``python -m headway.bootstrap``), shut down with everything it started."""
    async for process in running_daemon(tmp_path):
        yield process


@pytest.mark.asyncio
@pytest.mark.slow
async def test_embedded_dashboard_follows_a_live_rollout_and_promotes_with_the_token(
    daemon: DaemonProcess, browser: Browser, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    await daemon.call("POST", "/api/v1/apply", manifest("web", replicas=1, steps=steps), expect=201)
    await daemon.wait_rollout("web", lambda v: v["phase"] == "Healthy" and v["currentHash"], "v1 to be Healthy")

    page = await open_page(browser, f"{daemon.url}/dashboard/rollouts/default/web")
    await expect(page.locator("#phase")).to_have_text("Healthy")
    await page.evaluate("window.__notReloaded = true")

    await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
    await expect(page.locator("#weight")).to_have_text("30%")
    await expect(page.locator("#phase")).to_have_text("Paused")
    assert await page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating live"
    await expect(page.locator("svg[aria-label='canary weight over time'] path").first).to_be_visible()

    await confirm(page, "promote", "wrong-token")
    await expect(page.locator("#action-result")).to_contain_text("refused (401)")
    assert (await daemon.rollout("web"))["canaryWeight"] == 30, "a refused promote must change nothing"

    await confirm(page, "promote", daemon.token)
    await expect(page.locator("#action-result")).to_contain_text(re.compile("promote requested for default/web"))
    await expect(page.locator("#weight")).to_have_text("60%")
    assert (await daemon.rollout("web"))["canaryWeight"] == 60
    await page.screenshot(path=str(tmp_path / "embedded.png"), full_page=True)
