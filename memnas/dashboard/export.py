"""The dashboard's figures as image files (matplotlib), from the same data as the app."""

from __future__ import annotations

import os
from typing import Any

from memnas.errors import ConfigError
from memnas.records import WITH_RESULT

KINDS = ("pareto", "progress", "hypervolume")
"""Figures `write_plot` draws: Pareto front, best so far per objective, hypervolume."""
FORMATS = (".png", ".pdf", ".svg")


def plot_kind(path: str, kind: str | None = None) -> str:
    """The figure a file asks for: ``kind`` when given, else a kind named in the file name.

    Raises:
      ConfigError: an unknown kind, or a file name that names none (``pareto.png``,
        ``progress.png``, ``hypervolume.pdf`` do), or an unsupported extension.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ConfigError(f"plot file {path!r} must end in one of {', '.join(FORMATS)}")
    if kind is not None:
        if kind not in KINDS:
            raise ConfigError(f"plot kind must be one of {KINDS}, got {kind!r}")
        return kind
    base = os.path.basename(path).lower()
    found = [k for k in KINDS if k in base]
    if len(found) != 1:
        raise ConfigError(f"cannot tell which plot {path!r} wants; name the file after one of "
                          f"{KINDS} (e.g. pareto.png) or pass --kind")
    return found[0]


def _frame(store_url: str, name: str) -> tuple[Any, dict[str, str]]:
    from memnas.store import Store, reader

    store = Store(store_url, read_only=True)
    try:
        exp = store.require_experiment(name)
        objectives = dict(exp.get("objectives") or {})
        return reader.trials_frame(store, exp["id"], objectives), objectives
    finally:
        store.close()


def write_plot(store_url: str, name: str, path: str, kind: str | None = None,
               x: str | None = None, y: str | None = None) -> str:
    """Draws a figure of experiment ``name`` into ``path`` (PNG at 200 dpi, PDF or SVG).

    The data come from the functions the dashboard draws with (`data.pareto_info`,
    `data.best_so_far`, `analysis.hypervolume_over_time`); matplotlib draws them, so
    no browser is needed.

    Args:
      store_url: SQLAlchemy URL of the store.
      name: experiment name.
      path: output file; its name picks the kind unless ``kind`` is given.
      kind: "pareto", "progress" or "hypervolume".
      x: first value of a Pareto/hypervolume plot (default: first objective).
      y: second value (default: second objective).

    Returns:
      The kind drawn.

    Raises:
      ConfigError: bad kind or file name, unknown values, or nothing to draw.
      StoreError: no such store or experiment.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memnas.dashboard import analysis, data

    kind = plot_kind(path, kind)
    df, objectives = _frame(store_url, name)
    directions = data.value_directions(df, objectives)
    if not (df["status"].isin(WITH_RESULT)).any():
        raise ConfigError(f"experiment {name!r} has no finished trials to plot")
    arrow = {"max": "↑ max", "min": "↓ min"}
    if kind == "progress":
        items = list(objectives.items())
        fig, axes = plt.subplots(1, len(items), figsize=(5.2 * len(items), 3.8), squeeze=False)
        for ax, (obj, d) in zip(axes[0], items):
            s = data.best_so_far(df, obj, d)
            ax.scatter(s["number"], s["value"], s=8, color="0.6", alpha=0.5, label="trials",
                       rasterized=len(s) > 5000)
            ax.step(s["number"], s["best"], where="post", color="#1f77b4", lw=2,
                    label="best so far")
            ax.set(xlabel="trial number", ylabel=obj, title=f"Best {obj} so far ({arrow[d]})")
            ax.legend(loc="best", fontsize=8)
    else:
        names = list(objectives) + [n for n in directions if n not in objectives]
        x = x or (names[0] if names else None)
        y = y or (names[1] if len(names) > 1 else None)
        for v in (x, y):
            if v not in directions:
                raise ConfigError(f"experiment {name!r} has no value {v!r} to plot; "
                                  f"expected one of {sorted(directions)}")
        if x == y:
            raise ConfigError(f"a {kind} plot needs two different values, got {x!r} twice")
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        if kind == "pareto":
            info = data.pareto_info(df, x, y, directions, max_points=20000)
            rest = info.points[~info.points["on_front"]]
            ax.scatter(rest["x"], rest["y"], s=8, color="0.6", alpha=0.5, label="trials",
                       rasterized=len(rest) > 5000)
            ax.step(info.front["x"], info.front["y"], color="#d62728", lw=1.2, ls=":",
                    where="post" if info.x_direction == "min" else "pre")
            ax.scatter(info.front["x"], info.front["y"], s=30, color="#d62728",
                       edgecolors="white", zorder=3, label="Pareto front")
            ax.set(xlabel=f"{x} ({arrow[directions[x]]})", ylabel=f"{y} ({arrow[directions[y]]})",
                   title=f"Pareto front of {name}")
            ax.legend(loc="best", fontsize=8)
        else:
            hv = analysis.hypervolume_over_time(df, x, y, directions)
            ax.step(hv["number"], hv["hypervolume"], where="post", color="#1f77b4", lw=2)
            ax.set(xlabel="trial number", ylabel="hypervolume",
                   title=f"Hypervolume of {x} vs {y}: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=200)
    plt.close(fig)
    return kind
