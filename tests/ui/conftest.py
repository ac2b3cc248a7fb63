"""A headless Chromium for the browser tests: Debian's `chromium` driven by Playwright (browser
downloads are impossible here, so Playwright is pointed at the system binary)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


# Module scope: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
# and later tests in the same session (asyncio.run) must not find it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()
