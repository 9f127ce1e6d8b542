"""A real headless Chromium for the dashboard tests: Debian's binary driven by playwright, never a download.

Shared by the sim, embedded and cluster dashboard tests (the ``browser`` fixture lives in tests/e2e/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's chromium; required in CI (fail loudly), skipped locally when absent. Never downloads a browser."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI but is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return path


@asynccontextmanager
async def launched() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    await page.goto(url)
    return page


async def confirm(page: Page, action: str, token: str) -> None:
    await page.click(f"button[data-action='{action}']")
    await page.fill("#token", token)
    await page.click("#confirm-ok")
