"""report.html reads at a laptop width (1,366 px) without sideways scrolling, in a real Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

OVERFLOWING = """() => [...document.querySelectorAll('.scroll, .plot, pre, nav, table')]
    .filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth)"""


@pytest.mark.parametrize("width", [1366, 1024])
def test_report_has_no_sideways_scrolling(
    browser: Any, monitor_run_dir: Path, width: int, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto((monitor_run_dir / "report.html").as_uri(), timeout=30_000)
        assert page.locator("nav a").count() >= 5  # the section menu is there to overflow
        assert page.locator("#gates table").count() >= 1
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate("innerWidth")
        assert scroll_width <= inner, f"page is {scroll_width} px wide in a {inner} px window"
        assert page.evaluate(OVERFLOWING) == []  # nor does any block scroll sideways inside the page
        page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
        assert (tmp_path / f"report-{width}.png").stat().st_size > 10_000
    finally:
        page.close()
