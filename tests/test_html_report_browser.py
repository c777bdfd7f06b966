"""The HTML report in a real headless browser: Debian's Chromium driven by Playwright.

The page renders without a console error (a style or script the Content-Security-Policy refused would be one),
asks for nothing over any network, runs none of the hostile names, filters and sorts its table, opens a row's
evidence, and a screenshot is saved. Skipped with the reason where Playwright or Chromium is missing; in CI
(``CI=true``) that is a failure, since ``.ci/run`` installs both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .htmlreport_helpers import CHROMIUM_ARGS, HOSTILE_BLOCKED, Batch, chromium_or_skip, run_batch


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return run_batch(tmp_path_factory.mktemp("html-browser"))


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, dict[str, list[str]]]]:
    sync_playwright, chromium = chromium_or_skip()
    seen: dict[str, list[str]] = {"errors": [], "requests": [], "refused": [], "dialogs": []}
    with sync_playwright() as pw:
        # A fresh profile of its own for every test.
        context = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                        headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1280, "height": 900})
        try:

            def route(r: Any) -> None:
                # Only the report itself may be fetched; everything else is refused and noted.
                if r.request.url.startswith("file://") and r.request.url.endswith(".html"):
                    r.continue_()
                else:
                    seen["refused"].append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("requestfailed", lambda r: seen["errors"].append(f"request failed: {r.url}"))
            page.on("request", lambda r: seen["requests"].append(r.url))

            def dialog(d: Any) -> None:
                seen["dialogs"].append(d.message)
                d.dismiss()

            page.on("dialog", dialog)
            yield page, seen
        finally:
            context.close()


def visible_rows(page: Any) -> int:
    count: int = page.locator("#decisions-table tbody tr.row:not([hidden])").count()
    return count


def test_the_report_renders_offline_filters_sorts_and_opens_rows(batch: Batch, browser_page: Any,
                                                                 tmp_path: Path) -> None:
    page, seen = browser_page
    url = batch.run_html.resolve().as_uri()
    page.goto(url, wait_until="load")
    assert page.title() == "rspolicy: batch report"
    total = len(batch.decisions)
    assert visible_rows(page) == total

    # Every quicklook decoded (a data: image the CSP refused would be broken).
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 10 and all(w > 0 for w in widths)

    # The filter box hides rows; the outcome menu too; clearing them shows every row again.
    page.fill("#filter", "onerror")
    assert visible_rows(page) == 1 and page.text_content("#shown-count") == "1"
    assert HOSTILE_BLOCKED in page.locator("tr.row:not([hidden]) td.path").inner_text()
    page.fill("#filter", "")
    page.select_option("#outcome-filter", "degraded")
    assert visible_rows(page) == 5
    page.select_option("#outcome-filter", "")
    assert visible_rows(page) == total

    # Sorting by gsd: ascending, then descending; rows without a gsd last.
    def gsds() -> list[float]:
        keys = page.eval_on_selector_all("#decisions-table tbody tr.row", "rows => rows.map(r => r.cells[3].dataset.k)")
        return [float(k) for k in keys if k]

    page.click("#decisions-table th[data-col='3']")
    assert gsds() == sorted(gsds()) and page.get_attribute("th[data-col='3']", "aria-sort") == "ascending"
    page.click("#decisions-table th[data-col='3']")
    assert gsds() == sorted(gsds(), reverse=True)
    page.click("#decisions-table th[data-col='1']")  # by outcome: blocked first again
    assert page.get_attribute("#decisions-table tbody tr.row >> nth=0", "data-outcome") == "blocked"

    # A row opens its evidence and reasons; a second click closes it.
    first = page.locator("#decisions-table tbody tr.row").nth(0)
    first.click()
    detail = page.locator("tr.detail")
    assert detail.count() == 1
    text = detail.inner_text()
    assert "Reasons" in text and "Input files" in text and HOSTILE_BLOCKED in text
    first.click()
    assert page.locator("tr.detail").count() == 0

    # A footprint on the map opens its decision.
    page.locator("g.fp").nth(0).dispatch_event("click")
    assert page.locator("tr.detail").count() == 1 and "Evidence" in page.locator("tr.detail").inner_text()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert seen["errors"] == [] and seen["refused"] == [] and seen["dialogs"] == []
    assert all(u == url or u.startswith("data:") for u in seen["requests"]), seen["requests"]


def test_the_log_report_renders_without_errors(batch: Batch, browser_page: Any) -> None:
    page, seen = browser_page
    page.goto(batch.log_html.resolve().as_uri(), wait_until="load")
    assert visible_rows(page) == len(batch.decisions)
    assert page.locator("g.fp").count() >= 10 and page.locator("text=verified").count() >= 1
    assert seen["errors"] == [] and seen["refused"] == [] and seen["dialogs"] == []
