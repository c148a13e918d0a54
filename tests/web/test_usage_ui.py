"""The session page shows what a session uses: CPU and memory, each a figure and a sparkline
of the session's history, redrawn live as the agent reports samples (no reload)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from tests.web.conftest import Stand, mark, not_reloaded, shot

HOG = Path(__file__).parent.parent / "agent" / "apps" / "hog"
#: a figure of memory as the page writes it
MB = re.compile(r"^\d+ MB$")
#: a sparkline's points: three at least ("x,y x,y x,y ..."; one sample is drawn as two)
THREE_POINTS = re.compile(r"^\S+,\S+( \S+,\S+){2,}$")


def test_the_session_page_charts_cpu_and_memory(stand: Stand, page: Page) -> None:
    module_id = stand.api.module.publish(HOG).module_id
    tid = stand.start(module_id, memory_mb=64, seconds=60, burn=True)
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/sessions/{tid}")
    mark(page)
    usage = page.get_by_role("region", name="Usage")
    expect(usage).to_be_visible()
    expect(usage.get_by_role("img", name=re.compile("^CPU over the session"))).to_be_visible()
    expect(usage.get_by_role("img", name=re.compile("^Memory over the session"))).to_be_visible()
    expect(usage.locator("#usage-memory strong")).to_have_text(MB)
    # the next samples come over the task's watch: the line grows, the page is not reloaded
    expect(usage.locator("#usage-cpu polyline")).to_have_attribute("points", THREE_POINTS)
    shot(page, "session-usage")
    stand.api.app.stop(tid)
    assert not_reloaded(page), "the page was reloaded"
