"""`memnas dashboard` on a real store, every page loaded in headless Chromium (slow)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dashboard_helpers import MEMORY, TWO, serve_dashboard
from memnas.dashboard import browser as headless

pytestmark = pytest.mark.slow

CHROMIUM = headless.find_chromium()
try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or not HAVE_PLAYWRIGHT,
    reason=("no Chromium found (apt-get install chromium, or set MEMNAS_CHROMIUM)"
            if CHROMIUM is None else "the playwright package is missing (pip install -e .[dev])"))

PAGES = [
    ("experiments", "/experiments", headless.TABLE_JS),
    ("experiment", f"/experiment?experiment={TWO}", headless.EXPERIMENT_JS),
    ("experiment-all", f"/experiment?experiment={TWO}&show=all",
     headless.charts_js("Pareto front", "Best accuracy so far", "Best params so far",
                        "Hypervolume", "accuracy by ")),
    ("trial", f"/trial?experiment={MEMORY}&trial=0", headless.title_js("Architecture")),
    ("compare", "/compare", headless.title_js("Pareto fronts")),
]


@pytest.fixture(scope="module")
def served(dashboard_store, tmp_path_factory):
    """`memnas dashboard` (the CLI) on the test store, on a free port."""
    log = tmp_path_factory.mktemp("dashboard_server") / "server.log"
    with serve_dashboard(dashboard_store, log) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with headless.browser(CHROMIUM) as b:
        yield b


@needs_browser
@pytest.mark.parametrize("name,path,ready", PAGES, ids=[p[0] for p in PAGES])
def test_page_renders_without_errors(served, browser, tmp_path, name, path, ready):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        seconds = headless.load(page, served + path, ready, timeout_s=90)
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000  # a drawn page, not a blank skeleton
        assert headless.errors(page) == []
        text = page.inner_text("body")
        assert "Traceback" not in text and "StreamlitAPIException" not in text
        assert seconds < 90
    finally:
        page.close()


@needs_browser
def test_an_error_on_the_page_is_detected(served, browser):
    page = browser.new_page()
    try:
        headless.load(page, served + "/experiment?experiment=nope")
        page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=30_000)
        problems = headless.errors(page)
        assert len(problems) == 1 and "no experiment named 'nope'" in problems[0]
    finally:
        page.close()


@needs_browser
def test_clicking_a_trials_row_offers_its_trial_page(served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        headless.load(page, served + f"/trial?experiment={TWO}&trial=3",
                      headless.title_js("Architecture"), timeout_s=90)
        assert f"{TWO} · trial 3" in page.inner_text("h1")
        page.get_by_role("link", name=f"Back to {TWO}").click()
        page.wait_for_function(headless.EXPERIMENT_JS, timeout=90_000)
        assert page.url.split("?")[0].endswith("/experiment")
        assert headless.errors(page) == []
    finally:
        page.close()


@needs_browser
def test_bench_dashboard_measures_the_experiment_page(tmp_path):
    # In its own process: Playwright's sync API allows one driver per thread, and this
    # module's browser fixture holds one.
    shot, figures = tmp_path / "bench.png", tmp_path / "bench.json"
    code = ("import json, sys; from memnas.bench import dashboard; "
            f"out = dashboard.run(trials=1000, warm_runs=1, screenshot={str(shot)!r}); "
            f"json.dump(out, open({str(figures)!r}, 'w'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(figures.read_text())
    assert out["trials"] == 1000
    assert 0 < out["render_s_warm"] < 120 and out["render_s"] == out["render_s_cold"]
    assert out["under_target"] == (out["render_s"] < 3.0)
    assert out["read_s"] > 0 and out["front"] >= 1 and out["small_render_s_warm"] > 0
    assert 0 < out["render_s_in_app"] < 120
    assert 0 < out["render_s_all"] < 120 and out["server_start_s"] > 0
    assert shot.stat().st_size > 20_000
    assert "render (navigation start -> Pareto chart and trials table visible)" in proc.stdout


@needs_browser
def test_clicking_a_pareto_point_selects_its_trial(served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        headless.load(page, served + f"/experiment?experiment={TWO}", headless.EXPERIMENT_JS,
                      timeout_s=90)
        chart = page.locator(".js-plotly-plot", has=page.locator(".gtitle",
                                                                 has_text="Pareto front"))
        point = chart.locator(".scatterlayer .trace").last.locator("path.point").first
        point.scroll_into_view_if_needed()
        point.click(force=True)
        page.wait_for_selector("text=/Selected trial \\d+/", timeout=60_000)
        link = page.get_by_role("link", name=re.compile(r"Open trial \d+")).first
        number = re.search(r"\d+", link.inner_text()).group(0)
        link.click()
        page.wait_for_function(headless.title_js("Architecture"), timeout=60_000)
        assert f"{TWO} · trial {number}" in page.inner_text("h1")
        assert headless.errors(page) == []
    finally:
        page.close()
