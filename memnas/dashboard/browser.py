"""Serving the dashboard on a free port and loading its pages in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Any, Iterator

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--enable-unsafe-swiftshader")
"""Flags of the headless browser (software WebGL, so ``Scattergl`` draws without a GPU)."""

# Conditions checked in the page, every animation frame, until they hold.
RENDERED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const main = document.querySelector('[data-testid="stMain"]') || app;
  const blocks = main.querySelectorAll('[data-testid="stElementContainer"]');
  return blocks.length > 0 && Array.from(blocks).some(shown) && !running;
}"""

EXPERIMENT_JS = """() => {
  const titles = Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'));
  const pareto = titles.some((t) => t.textContent.startsWith('Pareto front'));
  const table = Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
    .some((el) => el.getBoundingClientRect().height > 0 && el.querySelector('canvas, table'));
  return pareto && table;
}"""

TABLE_JS = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
  .some((el) => el.getBoundingClientRect().height > 0 && el.querySelector('canvas, table'))"""


def title_js(prefix: str) -> str:
    """A ready condition: a Plotly chart whose title starts with ``prefix`` is drawn."""
    return ("() => Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'))"
            f".some((t) => t.textContent.startsWith({prefix!r}))")


def charts_js(*prefixes: str) -> str:
    """A ready condition: the trials table and a drawn Plotly chart for each title prefix."""
    wanted = ", ".join(repr(p) for p in prefixes)
    return ("() => { const titles = Array.from(document.querySelectorAll("
            "'.js-plotly-plot .gtitle')).map((t) => t.textContent); "
            f"return [{wanted}].every((p) => titles.some((t) => t.startsWith(p))) && "
            f"({TABLE_JS})(); }}")


ERRORS_JS = """() => {
  const out = [];
  document.querySelectorAll('[data-testid="stException"]').forEach(
    (e) => out.push('exception: ' + e.innerText.slice(0, 500)));
  document.querySelectorAll('[data-testid="stAlertContentError"]').forEach(
    (e) => out.push('error: ' + e.innerText.slice(0, 500)));
  return out;
}"""


def find_chromium() -> str | None:
    """A Chromium/Chrome executable: ``$MEMNAS_CHROMIUM``, ``/usr/bin/chromium``, or on PATH."""
    env = os.environ.get("MEMNAS_CHROMIUM")
    if env and os.path.exists(env):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(store_url: str, port: int | None = None, timeout_s: float = 60.0,
          log_path: str | None = None) -> Iterator[str]:
    """Runs the dashboard's server (`memnas.dashboard.command`, as `memnas dashboard` does)
    until exit.

    Yields:
      The base URL, once Streamlit's health check answers: after the server's warm-up,
      when `memnas dashboard` prints that it serves.

    Raises:
      RuntimeError: the server exited or did not answer within ``timeout_s`` (with
        the end of its log).
    """
    from memnas.dashboard import ENV_VAR, command

    port = port or free_port()
    log = open(log_path or os.devnull, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(command(port), env=dict(os.environ, **{ENV_VAR: store_url}),
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited with status {proc.returncode}: "
                                   f"{_tail(log_path)}")
            try:
                with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not answer on {base} within "
                                   f"{timeout_s:.0f} s: {_tail(log_path)}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def _tail(path: str | None) -> str:
    if not path or not os.path.exists(path):
        return "(no log)"
    with open(path) as f:
        return f.read()[-2000:]


@contextlib.contextmanager
def browser(executable: str | None = None) -> Iterator[Any]:
    """A Playwright Chromium browser on the system's Chromium (no download needed).

    Raises:
      RuntimeError: no Chromium found.
      ImportError: the ``playwright`` package is missing (``pip install -e .[dev]``).
    """
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found: install the chromium package or set "
                           "MEMNAS_CHROMIUM")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield b
        finally:
            b.close()


def load(page: Any, url: str, ready_js: str = RENDERED_JS, timeout_s: float = 60.0) -> float:
    """Opens ``url`` and waits until ``ready_js`` holds and Streamlit stopped running.

    Returns:
      Seconds from navigation start to the first animation frame where it held
      (the page's own clock, ``performance.now()``).

    Raises:
      playwright's TimeoutError: not rendered within ``timeout_s``.
    """
    page.goto(url, wait_until="commit")
    page.wait_for_function(ready_js, polling="raf", timeout=timeout_s * 1000)
    ms = page.evaluate("performance.now()")
    page.wait_for_function(RENDERED_JS, polling=100, timeout=timeout_s * 1000)
    return ms / 1000.0


def navigate(page: Any, link_text: str, ready_js: str, timeout_s: float = 60.0) -> float:
    """Clicks the app link ``link_text`` (Streamlit navigates without reloading the page)
    and waits until ``ready_js`` holds.

    Returns:
      Seconds from the click to the first animation frame where it held.
    """
    start = page.evaluate("performance.now()")
    page.get_by_role("link", name=link_text).first.click()
    page.wait_for_function(ready_js, polling="raf", timeout=timeout_s * 1000)
    ms = page.evaluate("performance.now()")
    page.wait_for_function(RENDERED_JS, polling=100, timeout=timeout_s * 1000)
    return (ms - start) / 1000.0


def errors(page: Any) -> list[str]:
    """Streamlit exception boxes and error alerts the page shows."""
    return list(page.evaluate(ERRORS_JS))
