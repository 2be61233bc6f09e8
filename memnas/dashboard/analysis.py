"""Derived data of the dashboard: experiments summary, hypervolume, decisions, table pages."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from memnas.dashboard.data import (_finished, algorithm_label, budget_spent, counts_of,
                                   format_time, front_mask, has_budgets, objectives_label)
from memnas.pareto import hypervolume_2d
from memnas.records import WITH_RESULT
from memnas.store.liveness import shown_status


class Page(NamedTuple):
    """One page of a filtered, sorted trials table."""

    rows: pd.DataFrame
    page: int
    pages: int
    total: int


def experiments_summary(experiments: Sequence[Mapping[str, Any]],
                        times: Mapping[int, Mapping[str, Any]],
                        bests: Mapping[int, Mapping[str, float | None]]) -> pd.DataFrame:
    """The experiments table: status, counts, best values, running time, algorithm.

    Args:
      experiments: rows of ``Store.experiments()``.
      times: `memnas.store.reader.experiment_times` (first start, last finish).
      bests: best value of each objective, by experiment id.

    Returns:
      Columns ``name``, ``status`` (`memnas.store.liveness.shown_status`), ``algorithm``, ``objectives``, ``trials``, ``done``,
      ``failed``, ``cached``, ``running``, ``running time (s)`` (first start to last
      finish), ``created``, ``updated``, then ``best NAME`` for each objective of any
      experiment (NaN where an experiment lacks it or has no finished trial).
    """
    rows = []
    for e in experiments:
        c = counts_of(e.get("counts") or {})
        t = times.get(e["id"]) or {}
        start, end = t.get("first_start"), t.get("last_finish")
        span = (end - start).total_seconds() if isinstance(start, _dt.datetime) and \
            isinstance(end, _dt.datetime) else None
        best = bests.get(e["id"]) or {}
        rows.append({
            "name": e["name"], "status": shown_status(e),
            "algorithm": algorithm_label(e.get("algorithm")),
            "objectives": objectives_label(e.get("objectives") or {}),
            "trials": c.total, "done": c.done, "failed": c.failed,
            "infeasible": c.infeasible, "cached": c.cached, "running": c.running,
            **{f"best {k}": v for k, v in best.items()},
            "running time (s)": span,
            "created": format_time(e.get("created_at")),
            "updated": format_time(e.get("updated_at")),
        })
    columns = ["name", "status", "algorithm", "objectives", "trials", "done", "failed",
               "infeasible", "cached", "running", "running time (s)", "created", "updated"]
    best_cols = list(dict.fromkeys(k for r in rows for k in r if k.startswith("best ")))
    df = pd.DataFrame(rows, columns=columns + best_cols)
    for c in best_cols:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["running time (s)"] = pd.to_numeric(df["running time (s)"], errors="coerce")
    return df


def reference_point(df: pd.DataFrame, x: str, y: str,
                    directions: Mapping[str, str]) -> tuple[float, float]:
    """A hypervolume reference: each value's worst finished value, 10% of its range beyond."""
    done = _finished(df, [x, y])
    ref = []
    for n in (x, y):
        lo, hi = float(done[n].min()), float(done[n].max())
        pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
        ref.append(lo - pad if directions[n] == "max" else hi + pad)
    return ref[0], ref[1]


def hypervolume_over_time(df: pd.DataFrame, x: str, y: str, directions: Mapping[str, str],
                          reference: Sequence[float] | None = None,
                          checkpoints: int = 300) -> pd.DataFrame:
    """The hypervolume of the front of finished trials after each of up to
    ``checkpoints`` evenly spaced trial counts.

    The front is carried from checkpoint to checkpoint (merged with the new points
    only), so the whole curve costs about one O(n log n) sort.

    Returns:
      Columns ``number`` (last trial number included), ``finished_at`` (its finish
      time, NaT when unknown), ``hypervolume``, and for a multi-fidelity experiment
      ``spent`` (the budget spent up to that trial, `data.budget_spent`); empty when no
      trial has both values.
      ``attrs["reference"]`` holds the reference point used.
    """
    done = _finished(df, [x, y]).sort_values("number", kind="stable")
    if done.empty:
        return pd.DataFrame(columns=["number", "finished_at", "hypervolume"])
    ref = tuple(reference) if reference is not None else reference_point(df, x, y, directions)
    dirs = [directions[x], directions[y]]
    values = done[[x, y]].to_numpy(dtype=float)
    ends = np.unique(np.linspace(1, len(done), num=min(checkpoints, len(done)),
                                 dtype=int))
    front = np.empty((0, 2))
    start = 0
    out_n, out_hv = [], []
    for end in ends:
        chunk = np.vstack([front, values[start:end]])
        front = chunk[front_mask(chunk, dirs)]
        start = end
        out_n.append(end - 1)
        out_hv.append(hypervolume_2d(front, dirs, ref))
    numbers = done["number"].to_numpy()[out_n]
    finished = pd.to_datetime(done["finished_at"]).to_numpy()[out_n] \
        if "finished_at" in done.columns else [pd.NaT] * len(out_n)
    out = pd.DataFrame({"number": numbers, "finished_at": finished, "hypervolume": out_hv})
    if has_budgets(df):
        out["spent"] = budget_spent(df).reindex(numbers).to_numpy(dtype=float)
    out.attrs["reference"] = ref
    return out


def decision_stats(decisions: pd.DataFrame, df: pd.DataFrame, decision: str,
                   value: str) -> pd.DataFrame:
    """Quartiles of ``value`` over finished trials per choice of ``decision``.

    Computed here, not in the browser, so a box plot of 100k trials stays small.

    Returns:
      Columns ``choice``, ``n``, ``min``, ``q1``, ``median``, ``q3``, ``max``, ``mean``,
      one row per choice, sorted by choice.
    """
    done = _finished(df, [value])[["number", value]]
    if decision not in decisions.columns or done.empty:
        return pd.DataFrame(columns=["choice", "n", "min", "q1", "median", "q3", "max",
                                     "mean"])
    merged = done.merge(decisions[["number", decision]], on="number").dropna(
        subset=[decision])
    merged["choice"] = merged[decision].astype(str)
    g = merged.groupby("choice", sort=True)[value]
    out = pd.DataFrame({"n": g.size(), "min": g.min(), "q1": g.quantile(0.25),
                        "median": g.median(), "q3": g.quantile(0.75), "max": g.max(),
                        "mean": g.mean()}).reset_index()
    return out


def parallel_frame(decisions: pd.DataFrame, df: pd.DataFrame, value: str,
                   names: Sequence[str], max_rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Finished trials' decisions (as category codes) and ``value``, for parallel coordinates.

    At most ``max_rows`` trials (a uniform random sample). Each decision column holds
    codes; ``attrs["labels"][name]`` lists the choices in code order.
    """
    done = _finished(df, [value])[["number", value]]
    merged = done.merge(decisions[["number", *names]], on="number")
    if len(merged) > max_rows:
        merged = merged.sample(n=max_rows, random_state=seed)
    labels: dict[str, list[str]] = {}
    for n in names:
        cat = pd.Categorical(merged[n].astype("string").fillna("–"))
        merged[n] = cat.codes
        labels[n] = [str(c) for c in cat.categories]
    merged.attrs["labels"] = labels
    return merged


def filter_trials(df: pd.DataFrame, statuses: Sequence[str] | None = None, text: str = "",
                  sort_by: str = "number", descending: bool = False) -> pd.DataFrame:
    """Trials whose status is in ``statuses`` and whose summary contains ``text``, sorted.

    Raises:
      ValueError: ``sort_by`` is not a column of ``df``.
    """
    if sort_by not in df.columns:
        raise ValueError(f"cannot sort trials by {sort_by!r}; expected one of {list(df.columns)}")
    out = df
    if statuses:
        out = out[out["status"].isin(list(statuses))]
    if text:
        out = out[out["summary"].str.contains(text, case=False, regex=False, na=False)]
    return out.sort_values(sort_by, ascending=not descending, kind="stable",
                           na_position="last")


def page_of(df: pd.DataFrame, page: int, size: int) -> Page:
    """Rows of page ``page`` (1-based, clamped to the last page) of ``size`` rows."""
    if size < 1:
        raise ValueError(f"page size must be at least 1, got {size!r}")
    pages = max(1, -(-len(df) // size))
    page = min(max(1, int(page)), pages)
    return Page(rows=df.iloc[(page - 1) * size: page * size], page=page, pages=pages,
                total=len(df))


def cache_rate(counters: Mapping[str, float]) -> float | None:
    """Share of trials the equivalence cache answered (hits and attached), None if none."""
    reused = counters.get("hits", 0) + counters.get("attached", 0)
    total = counters.get("misses", 0) + reused
    return reused / total if total else None


def done_share(df: pd.DataFrame) -> float:
    """Share of trials with results."""
    return float(df["status"].isin(WITH_RESULT).mean()) if len(df) else 0.0
