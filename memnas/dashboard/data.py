"""Data preparation of the dashboard: store rows in, DataFrames and NamedTuples out."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from memnas.pareto import pareto_mask
from memnas.store.reader import fold_twins
from memnas.store.rungs import BUDGET_SPENT, ranked


class Counts(NamedTuple):
    """Trials of an experiment per status."""

    total: int
    completed: int
    cached: int
    failed: int
    running: int
    pending: int
    infeasible: int = 0
    """Trials whose costs broke the experiment's constraints before training."""

    @property
    def done(self) -> int:
        """Trials with results (completed or cached)."""
        return self.completed + self.cached


class ParetoInfo(NamedTuple):
    """What a Pareto scatter of two values draws.

    Attributes:
      x: name of the value on the x axis.
      y: name of the value on the y axis.
      x_direction: "max" or "min".
      y_direction: "max" or "min".
      points: every finished architecture with both values (cached twins folded into
        the trial they reused): columns ``number``, ``summary``, ``x``, ``y``,
        ``on_front`` (bool), ``twins`` (numbers folded into it) and ``hover`` (text with
        every value, for front points; "" for the others).
      front: the rows of ``points`` on the front, sorted by ``x`` ascending.
    """

    x: str
    y: str
    x_direction: str
    y_direction: str
    points: pd.DataFrame
    front: pd.DataFrame


def counts_of(counts: Mapping[str, int]) -> Counts:
    """Turns ``{status: n}`` (``Store.experiments()[i]["counts"]``) into `Counts`."""
    c = {k: int(v) for k, v in (counts or {}).items()}
    return Counts(total=sum(c.values()), completed=c.get("completed", 0),
                  cached=c.get("cached", 0), failed=c.get("failed", 0),
                  running=c.get("running", 0), pending=c.get("pending", 0),
                  infeasible=c.get("infeasible", 0))


def objectives_label(objectives: Mapping[str, str]) -> str:
    """``{"accuracy": "max", "params": "min"}`` as ``"accuracy (max), params (min)"``."""
    return ", ".join(f"{k} ({d})" for k, d in (objectives or {}).items())


def algorithm_label(algorithm: Mapping[str, Any] | None) -> str:
    """A stored algorithm description as ``"evolution(population_size=20)"``."""
    if not algorithm:
        return ""
    name = str(algorithm.get("name", "?"))
    options = algorithm.get("options") or {}
    if not options:
        return name
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"


def format_time(value: _dt.datetime | None) -> str:
    """A stored (naive UTC) timestamp as ``"2026-11-25 23:25:42"``; "" for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def direction_of(name: str, objectives: Mapping[str, str], costs: set[str]) -> str:
    """The direction to optimise ``name``: its objective's, else "min" for costs, else "max"."""
    if name in (objectives or {}):
        return objectives[name]
    return "min" if name in costs else "max"


def value_directions(df: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, str]:
    """The value columns of a `memnas.store.reader.trials_frame` (objectives first), each
    with the direction to optimise it."""
    costs = set(df.attrs.get("costs") or ())
    return {n: direction_of(n, objectives, costs) for n in df.attrs.get("values") or ()}


def _finished(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Candidates with results that have every value of ``names`` (no supernet runs, no
    trial that broke a constraint: `memnas.store.rungs.ranked`)."""
    if df.empty or any(n not in df.columns for n in names):
        return df.iloc[0:0]
    return ranked(df).dropna(subset=list(names))


def has_budgets(df: pd.DataFrame) -> bool:
    """Whether a trials frame is a multi-fidelity experiment's: some trial has a budget."""
    return "budget" in df.columns and bool(df["budget"].notna().any())


def budget_spent(df: pd.DataFrame) -> pd.Series:
    """The budget spent by all trials up to each trial number (cost ``budget_spent``, 0
    where a trial has none), indexed by number."""
    spent = df[BUDGET_SPENT] if BUDGET_SPENT in df.columns else pd.Series(0.0, index=df.index)
    order = df["number"].to_numpy().argsort(kind="stable")
    total = np.nan_to_num(spent.to_numpy(dtype=float)[order], nan=0.0).cumsum()
    return pd.Series(total, index=df["number"].to_numpy()[order])


def best_value(df: pd.DataFrame, objective: str, direction: str) -> float | None:
    """The best value of ``objective`` among a trials frame's finished trials, or None."""
    done = _finished(df, [objective])
    if done.empty:
        return None
    v = done[objective].max() if direction == "max" else done[objective].min()
    return float(v)


def best_so_far(df: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """The running best of ``objective`` over trial numbers.

    Args:
      df: a `memnas.store.reader.trials_frame`.
      objective: value name.
      direction: "max" or "min".

    Returns:
      One row per finished trial with the value, ordered by number: columns
      ``number``, ``value``, ``best`` (best of this and earlier trials) and
      ``improved`` (this trial set a new best); ``finished_at`` too when ``df`` has it;
      for a multi-fidelity experiment (`has_budgets`) ``budget`` (the trial's) and
      ``spent`` (the budget all trials up to it spent, `budget_spent`).
    """
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    done = _finished(df, [objective]).sort_values("number", kind="stable")
    out = pd.DataFrame({"number": done["number"].to_numpy(dtype=int),
                        "value": done[objective].to_numpy(dtype=float)})
    if "finished_at" in done.columns:
        out["finished_at"] = pd.to_datetime(done["finished_at"]).to_numpy()
    if has_budgets(df):
        out["budget"] = done["budget"].to_numpy()
        out["spent"] = budget_spent(df).reindex(out["number"]).to_numpy(dtype=float)
    best = out["value"].cummax() if direction == "max" else out["value"].cummin()
    out["best"] = best
    out["improved"] = best.ne(best.shift()).to_numpy(dtype=bool) if len(out) else []
    return out


def hover_text(row: Mapping[str, Any], names: Sequence[str], width: int = 70) -> str:
    """Plotly hover text of a trial: number (and its cached twins'), summary (wrapped)
    and its values."""
    summary = str(row.get("summary") or "")
    wrapped = "<br>".join(summary[i:i + width] for i in range(0, len(summary), width))
    twins = list(row.get("twins") or ())
    also = f" (cached twins: {', '.join(f'#{n}' for n in twins)})" if twins else ""
    parts = [f"<b>trial {int(row['number'])}</b>{also}"]
    if wrapped:
        parts.append(wrapped)
    for n in names:
        v = row.get(n)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            parts.append(f"{n} = {v:.6g}")
    return "<br>".join(parts)


def front_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """`memnas.pareto.pareto_mask` of n x 2 ``values``, with a vectorised pre-pass.

    After sorting by the first value, only points whose second value is no worse than
    every earlier point's can be on the front (any other is dominated by an earlier
    one); `pareto_mask` then runs on those few. The result equals ``pareto_mask``'s.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) == 0:
        return pareto_mask(v, directions) if len(v) else np.zeros(0, dtype=bool)
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    m = v * signs
    ok = np.nonzero(~np.isnan(m).any(axis=1))[0]
    mask = np.zeros(len(v), dtype=bool)
    if ok.size == 0:
        return mask
    order = ok[np.lexsort((m[ok, 1], m[ok, 0]))]
    y = m[order, 1]
    before = np.concatenate([[np.inf], np.minimum.accumulate(y)[:-1]])
    candidates = order[y <= before]
    mask[candidates] = pareto_mask(v[candidates], directions)
    return mask


def pareto_info(df: pd.DataFrame, x: str, y: str, directions: Mapping[str, str],
                hover_names: Sequence[str] | None = None, color: str | None = None,
                max_points: int | None = None, seed: int = 0) -> ParetoInfo:
    """The points and non-dominated front of finished trials on two values.

    Args:
      df: a `memnas.store.reader.trials_frame`.
      x: value on the x axis.
      y: value on the y axis.
      directions: direction ("max"/"min") of at least ``x`` and ``y``.
      hover_names: values listed in the hover text (default ``x`` and ``y``).
      color: a third value, kept as column ``color`` of the points (None: no colour).
      max_points: keep every front point but at most this many points in all,
        dropping a uniform random sample of dominated ones (None: keep all).
      seed: seed of that sample.

    Returns:
      A `ParetoInfo` with one point per architecture: cached twins are folded into the
      trial they reused (`memnas.store.reader.fold_twins`; column ``twins`` lists their
      numbers). The front flags are `front_mask` (= `memnas.pareto.pareto_mask`,
      O(n log n)) of all points, computed before any point is dropped.
      ``points.attrs["total"]`` is the number of points before dropping,
      ``points.attrs["folded"]`` the number of twins folded.
    """
    for n in (x, y):
        if directions.get(n) not in ("max", "min"):
            raise ValueError(f"direction of {n!r} must be 'max' or 'min', "
                             f"got {directions.get(n)!r}")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be at least 1 or None, got {max_points!r}")
    names = list(dict.fromkeys([x, y, *(hover_names or [])]))
    finished = _finished(df, [x, y])
    done = fold_twins(finished, [x, y])
    values = done[[x, y]].to_numpy(dtype=float)
    mask = front_mask(values, [directions[x], directions[y]])
    keep = np.ones(len(done), dtype=bool)
    if max_points is not None and len(done) > max_points:
        rest = np.nonzero(~mask)[0]
        room = max(max_points - int(mask.sum()), 0)
        chosen = np.random.default_rng(seed).choice(rest, size=min(room, rest.size),
                                                    replace=False)
        keep = mask.copy()
        keep[chosen] = True
    kept = done[keep]
    points = pd.DataFrame({
        "number": kept["number"].to_numpy(dtype=int),
        "summary": kept["summary"].astype(str).to_numpy(),
        "x": values[keep, 0],
        "y": values[keep, 1],
        "on_front": mask[keep],
        "twins": kept["twins"].to_numpy(),
    })
    if color is not None:
        points["color"] = kept[color].to_numpy(dtype=float) if color in kept.columns \
            else np.nan
    # Full hover text (every value) for front points; the others name their trial, summary
    # and the axes through a hover template, which keeps 5000-point charts light.
    listed = [n for n in names if n in kept.columns]
    on = mask[keep]
    hover = np.full(len(kept), "", dtype=object)
    if on.any():
        hover[on] = [hover_text(r, listed) for r in
                     kept.loc[on, ["number", "summary", "twins", *listed]].to_dict("records")]
    points["hover"] = hover
    points.attrs["total"] = int(len(done))
    points.attrs["folded"] = int(len(finished) - len(done))
    front = points[points["on_front"]].sort_values(["x", "y"], kind="stable")
    return ParetoInfo(x=x, y=y, x_direction=directions[x], y_direction=directions[y],
                      points=points, front=front.reset_index(drop=True))


def curve_frame(points: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Curve points of ``Store.curve(trial_id)`` as a DataFrame (step, name, value)."""
    return pd.DataFrame(list(points), columns=["step", "name", "value"])


def cache_label(c: dict[str, float]) -> str:
    """One line on the equivalence cache: evaluations, hits, attached, time saved, hit rate."""
    reused = c["hits"] + c["attached"]
    total = c["misses"] + reused
    rate = f"{100.0 * reused / total:.0f}%" if total else "–"
    return (f"Equivalence cache: {c['misses']} evaluated, {c['hits']} hits, "
            f"{c['attached']} attached to a running twin, {c['saved_s']:.1f} s of evaluation "
            f"saved (reuse rate {rate})")
