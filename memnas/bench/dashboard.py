"""`memnas bench dashboard`: the Experiment page's render time in a real browser at 100k trials."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from typing import Any

TARGET_S = 3.0
SMALL = 100
"""Trials of the reference experiment timed beside the big one (the page's fixed cost)."""
ALL_CHARTS = ("Pareto front", "Best accuracy so far", "Best params so far", "Hypervolume",
              "accuracy by ")
"""Title prefixes of the Experiment page's charts with every analysis shown."""


def run(quick: bool = False, trials: int | None = None, warm_runs: int = 3,
        screenshot: str | None = None) -> dict[str, Any]:
    """Fills a SQLite store with synthetic trials, serves the dashboard, and times the
    Experiment page in headless Chromium from navigation start until the Pareto chart and
    the trials table are visible.

    Cold: the first visit after the server answers (as `memnas dashboard` does, the server
    first loads its modules and reads the newest experiments into its caches: that is
    ``server_start_s``, before the clock starts; the browser has nothing cached). Warm:
    the median of ``warm_runs`` visits after it, each in a fresh tab (the browser still
    loads and compiles Streamlit's and Plotly's scripts). In app: the median of
    ``warm_runs`` navigations inside the open app (trial page -> its experiment), the
    way a user moves between pages. All: a fresh tab with every analysis of the page
    shown (``?show=all``: best so far, hypervolume, decisions), until all its charts and
    the table are drawn.

    Prints and returns: ``trials``, ``render_s`` (the cold figure, the one to hold to the
    3 s target), ``render_s_cold``, ``render_s_warm``, ``render_s_in_app``,
    ``render_s_all``, ``server_start_s``, ``read_s`` (the page's SQL read of
    all trials, alone), ``pareto_s`` (front of all points plus the drawn sample),
    ``fill_s``, ``small_render_s_first`` / ``small_render_s_warm`` (the same page for a
    100-trial experiment in the same server: the page's fixed cost on this machine, so
    the difference is what the trial count adds), ``load_avg`` (the machine's 1-minute
    load average at the end of the run, this run's own load included),
    ``load_avg_before`` (at its start: other work on the machine) and ``cpus``.

    Raises:
      RuntimeError: no Chromium (install the ``chromium`` package).
      ImportError: no ``playwright`` (``pip install -e .[dev]``).
    """
    trials = trials or (10_000 if quick else 100_000)
    folder = tempfile.mkdtemp(prefix="memnas-bench-dashboard-")
    try:
        return _run(folder, trials, warm_runs, screenshot)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(folder: str, trials: int, warm_runs: int, screenshot: str | None) -> dict[str, Any]:
    from memnas.bench.synthetic import fill
    from memnas.dashboard import browser as headless, data
    from memnas.store import Store, reader

    url = f"sqlite:///{os.path.join(folder, 'store.db')}"
    load_before = os.getloadavg()[0]  # other work on the machine, before this run's own
    start = time.perf_counter()
    exp_id = fill(url, trials, name="synthetic")
    fill(url, SMALL, name="small", seed=1)
    out: dict[str, Any] = {"trials": trials, "fill_s": time.perf_counter() - start,
                           "target_s": TARGET_S, "cpus": os.cpu_count()}

    store = Store(url, read_only=True)
    objectives = {"accuracy": "max", "params": "min"}
    start = time.perf_counter()
    df = reader.trials_frame(store, exp_id, objectives)
    out["read_s"] = time.perf_counter() - start
    start = time.perf_counter()
    info = data.pareto_info(df, "accuracy", "params", {"accuracy": "max", "params": "min"},
                            hover_names=list(objectives), max_points=4000)
    out["pareto_s"] = time.perf_counter() - start
    out["front"] = len(info.front)
    store.close()

    page_url = "/experiment?experiment=synthetic"
    log = os.path.join(folder, "streamlit.log")
    start = time.perf_counter()
    with headless.serve(url, log_path=log) as base, headless.browser() as browser:
        out["server_start_s"] = time.perf_counter() - start
        loads = []
        for i in range(1 + warm_runs):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            loads.append(headless.load(page, base + page_url, headless.EXPERIMENT_JS,
                                       timeout_s=180))
            problems = headless.errors(page)
            if problems:
                raise RuntimeError(f"the Experiment page shows errors: {problems}")
            if screenshot and i == 0:
                page.screenshot(path=screenshot)
            page.close()
        # Every analysis of the page shown at once, in a fresh tab.
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        out["render_s_all"] = headless.load(
            page, base + page_url + "&show=all", headless.charts_js(*ALL_CHARTS),
            timeout_s=180)
        problems = headless.errors(page)
        if problems:
            raise RuntimeError(f"the Experiment page with every analysis shows errors: "
                               f"{problems}")
        page.close()
        # In the open app (its scripts loaded): from a trial back to the experiment.
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        in_app = []
        for i in range(warm_runs):
            headless.load(page, base + "/trial?experiment=synthetic&trial=1",
                          headless.title_js("Architecture"), timeout_s=180)
            in_app.append(headless.navigate(page, "Back to synthetic", headless.EXPERIMENT_JS,
                                            timeout_s=180))
        page.close()
        # The same page for a 100-trial experiment: what the page costs on this machine
        # at any size, so that the difference is what 100k trials add.
        small = []
        for i in range(1 + warm_runs):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            small.append(headless.load(page, base + "/experiment?experiment=small",
                                       headless.EXPERIMENT_JS, timeout_s=180))
            page.close()
        out["small_render_s_first"] = small[0]
        out["small_render_s_warm"] = statistics.median(small[1:]) if small[1:] else small[0]
    out["render_s_in_app"] = statistics.median(in_app) if in_app else None
    out["load_avg"] = os.getloadavg()[0]
    out["load_avg_before"] = load_before
    out["render_s_cold"] = loads[0]
    out["render_s_warm"] = statistics.median(loads[1:]) if loads[1:] else loads[0]
    out["render_s_warm_all"] = loads[1:]
    out["render_s"] = out["render_s_cold"]
    out["under_target"] = out["render_s"] < TARGET_S
    print(f"memnas bench dashboard: {trials} synthetic trials (SQLite), Experiment page in "
          f"headless Chromium, {out['cpus']} CPUs, load average {out['load_avg']:.1f} "
          f"({out['load_avg_before']:.1f} before the run)")
    print(f"  render (navigation start -> Pareto chart and trials table visible): "
          f"cold {out['render_s_cold']:.2f} s, warm {out['render_s_warm']:.2f} s "
          f"(target {TARGET_S:.0f} s: {'met' if out['under_target'] else 'missed'})")
    print(f"  with every analysis shown (?show=all: {len(ALL_CHARTS)} charts and the table), "
          f"fresh tab: {out['render_s_all']:.2f} s")
    if out["render_s_in_app"] is not None:
        print(f"  in the open app (trial page -> Experiment page link): "
              f"{out['render_s_in_app']:.2f} s")
    print(f"  the same page for {SMALL} trials: first {out['small_render_s_first']:.2f} s, "
          f"warm {out['small_render_s_warm']:.2f} s (the page's fixed cost on this machine)")
    print(f"  server side: read {trials} trials {out['read_s']:.2f} s, Pareto front "
          f"({out['front']} points) and sample {out['pareto_s']:.2f} s; server start "
          f"(warm-up included, before the clock) {out['server_start_s']:.1f} s; filling the "
          f"store {out['fill_s']:.1f} s")
    return out
