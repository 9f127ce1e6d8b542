"""The cluster dashboard in Debian's headless Chromium: a rollout in the fidelity emulator, served by `ClusterSource`.

The page must list it, show its analysis run with the judge's evidence, follow a weight the "controller" (the test)
writes without a reload, and refuse promote without the token, then patch the Rollout with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, expect

from headway.dashboard.app import create_app
from headway.kube.client import KubeClient, rollouts
from headway.runtimes.kubernetes.dashboard_source import ClusterSource
from tests.e2e.browser import confirm, open_page
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP
from tests.e2e.kubernetes.test_cli_cluster import HASHES, NS, seed_paused_canary

TOKEN = "cluster-browser-token"


@pytest_asyncio.fixture
async def dashboard(api: ApiServer) -> AsyncIterator[str]:
    seed_paused_canary(api)
    source = ClusterSource(KubeClient.for_server(api.url), poll_seconds=0.2)
    runner = web.AppRunner(create_app(source, token=TOKEN, heartbeat_seconds=2.0), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()
    await source.close()
    await source.client.close()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_cluster_dashboard_shows_the_run_follows_the_weight_and_promotes_with_the_token(
    api: ApiServer, dashboard: str, browser: Browser, tmp_path: Path
) -> None:
    page = await open_page(browser, dashboard)
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("Paused")
    await page.click("text=web")
    await expect(page.locator("h1")).to_contain_text("default/web")
    await expect(page.locator("#phase")).to_have_text("Paused")
    await expect(page.locator("#weight")).to_have_text("20%")
    await expect(page.locator(".pods .pod")).to_have_count(3)
    await expect(page.locator(".pods .pod.Pending")).to_have_text("web-bbb222-p2")
    await expect(page.locator(".run h3").first).to_contain_text(f"web-{HASHES[2]}-1")
    await expect(page.locator(".judge").first).to_contain_text("ratio")
    measurements = page.locator("svg[aria-label='web-bbb222-1 measurements']")
    await expect(measurements.locator("path")).to_have_count(1)  # success-rate; the judge's windows are charted apart
    await expect(measurements.locator("circle.bad")).to_have_count(1)  # its failed measurement is marked
    await expect(page.locator("svg[aria-label='web-bbb222-1 judge ratio'] path").first).to_be_visible()

    await page.evaluate("window.__notReloaded = true")
    weights = {"canary": {"weights": {"canary": {"weight": 35}, "stable": {"weight": 65}}}}
    api.kube.patch(rollouts(GROUP), "web", NS, {"status": weights}, status=True)
    await expect(page.locator("#weight")).to_have_text("35%")
    assert await page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating live"

    await confirm(page, "promote", "wrong-token")
    await expect(page.locator("#action-result")).to_contain_text("refused (401)")
    body = api.kube.get(rollouts(GROUP), "web", NS)
    assert body is not None and body["status"]["pauseConditions"], "a refused promote must change nothing"

    await confirm(page, "promote", TOKEN)
    await expect(page.locator("#action-result")).to_contain_text("promote requested for default/web")
    body = api.kube.get(rollouts(GROUP), "web", NS)
    assert body is not None and body["status"].get("pauseConditions", []) == []
    await page.screenshot(path=str(tmp_path / "cluster.png"), full_page=True)
