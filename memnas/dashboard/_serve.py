"""The dashboard's server process: warms its caches, then runs ``streamlit run app.py``.

``python -m memnas.dashboard._serve [STREAMLIT FLAGS]`` is what `memnas dashboard` starts.
Before Streamlit listens, it imports the pages' modules (pandas, Plotly, SQLAlchemy) and
reads what the Experiment page's first view needs for the most recently updated
experiments into the same caches the pages use (`memnas.dashboard._ui`'s
``st.cache_data`` / ``st.cache_resource`` loaders live in this process's memory), so the
first visitor does not pay for them. Streamlit answers its health check only afterwards.
While it serves, the pages watch the store's SQLite file (`sqlite_path`, `file_state`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

WARM_EXPERIMENTS = 3
"""Most recently updated experiments whose Experiment page is warmed at start."""

_LOG = logging.getLogger("memnas.dashboard")


def warm(url: str, experiments: int = WARM_EXPERIMENTS) -> dict[str, Any]:
    """Loads the dashboard's modules and fills its caches for ``url``'s recent experiments.

    Never raises: a store that cannot be read is reported by the pages, in one line.

    Args:
      url: the store's SQLAlchemy URL.
      experiments: how many experiments (most recently updated first) to warm.

    Returns:
      ``{"seconds": ..., "experiments": [names warmed], "error": str | None}``.
    """
    start = time.perf_counter()
    out: dict[str, Any] = {"experiments": [], "error": None}
    import streamlit  # noqa: F401  sets up Streamlit's loggers, which we quiet next

    # Outside a script run and before the server exists, Streamlit warns at every cached
    # call that it keeps the values in memory: that is where the pages will find them.
    quiet = _quiet_streamlit()
    try:
        import plotly.graph_objects  # noqa: F401  the first figure's imports

        from memnas.dashboard import (_page_compare, _page_experiment,  # noqa: F401
                                      _page_experiments, _page_trial, _ui)

        rows = _ui.load_experiments(url)
        recent = sorted(rows, key=lambda e: str(e.get("updated_at") or ""), reverse=True)
        for exp in recent[:max(0, experiments)]:
            _page_experiment.warm(url, exp)
            out["experiments"].append(exp["name"])
    except Exception as e:  # the pages show the error to the visitor
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        out["error"] = f"{type(e).__name__}: {first}"  # one line on the console
    finally:
        _restore(quiet)
    out["seconds"] = time.perf_counter() - start
    return out


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite store URL as written in it; None for other databases."""
    try:
        from sqlalchemy.engine import make_url

        from memnas.store import normalize_url

        parsed = make_url(normalize_url(url))
    except Exception:
        return None
    db = (parsed.database or "") if parsed.get_backend_name() == "sqlite" else ""
    return None if db in ("", ":memory:") or db.startswith("file:") else db


def file_state(path: str) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime) of a file; None when it does not exist.

    The first two are the file's identity: another file at the same path (replaced, or
    deleted and put back) has another one while the old file is held open.
    """
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns


def _quiet_streamlit() -> dict[str, int]:
    levels = {}
    for name in ("streamlit", "streamlit.runtime.caching.cache_data_api",
                 "streamlit.runtime.scriptrunner_utils.script_run_context"):
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.ERROR)
    return levels


def _restore(levels: dict[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> None:
    """Warms the caches for ``$MEMNAS_STORE``, then runs ``streamlit run app.py ARGV``."""
    import os

    try:
        from memnas.dashboard import ENV_VAR, app_path
        from memnas.store import DEFAULT_URL

        args = list(sys.argv[1:] if argv is None else argv)
        url = os.environ.get(ENV_VAR, "").strip() or DEFAULT_URL  # as `_ui.store_url`
        done = warm(url)
    except KeyboardInterrupt:  # Ctrl-C while warming: stop quietly, as Streamlit would
        sys.exit(0)
    note = f"; not warmed: {done['error']}" if done["error"] else ""
    print(f"memnas dashboard: warmed {len(done['experiments'])} experiment(s) in "
          f"{done['seconds']:.1f} s{note}", file=sys.stderr, flush=True)
    from streamlit.web import cli

    cli.main(args=["run", app_path(), *args], prog_name="streamlit")


if __name__ == "__main__":
    main()
