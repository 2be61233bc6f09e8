"""A trial's rung (its budget, the trial it continued) and its feasibility, as the readers see them.

Multi-fidelity trials (`memnas.algorithms.fidelity`) store their whole budget, e.g.
``{"steps": 3, "max_steps": 9}``, the cost ``budget_spent`` and ``parent_id`` (the rung
below whose checkpoint they continued). A constrained experiment stores ``infeasible``
trials (never trained: no metrics) and, on a completed trial that broke a constraint on a
metric known after training, the cost ``constraint_violation`` > 0. Like a supernet run
(`memnas.store.roles`), neither is ever a best trial nor on a Pareto front.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import sqlalchemy as sa

from memnas.store.roles import candidates

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BUDGET_SPENT", "VIOLATION", "budget_column", "budget_unit", "budget_value",
           "not_violating", "ranked", "rung_columns", "violating_mask"]

VIOLATION = "constraint_violation"
"""The cost that marks a completed trial that broke a constraint (its relative excess)."""
BUDGET_SPENT = "budget_spent"
"""The cost holding the budget a multi-fidelity trial trained (beyond its parent's)."""


def budget_unit(budget: Mapping[str, Any] | None) -> str | None:
    """The budget's one key beside its ``max_`` bounds (``"steps"``), else None."""
    if not isinstance(budget, Mapping):
        return None
    plain = [k for k in budget if not str(k).startswith("max_")]
    return str(plain[0]) if len(plain) == 1 else None


def budget_value(budget: Mapping[str, Any] | None) -> float | str | None:
    """A trial's budget as one readable value: its `budget_unit`'s number
    (``{"steps": 3, "max_steps": 9}`` -> 3.0), else the dict as text; None without one."""
    if not isinstance(budget, Mapping) or not budget:
        return None
    unit = budget_unit(budget)
    v = budget.get(unit) if unit is not None else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return json.dumps(dict(budget), sort_keys=True, default=str)


def budget_column(budgets: Sequence[Mapping[str, Any] | None]) -> tuple[list[Any], str | None]:
    """The ``budget`` column of a trials table and its unit.

    Returns:
      One value per trial: floats (NaN without a budget) when every budget reads as a
      number (`budget_value`), else texts (None without); and the unit all budgets
      share (e.g. ``"steps"``), or None.
    """
    values = [budget_value(b) for b in budgets]
    units = {budget_unit(b) for b in budgets if b}
    unit = next(iter(units)) if len(units) == 1 else None
    if all(v is None or isinstance(v, float) for v in values):
        return [math.nan if v is None else v for v in values], unit
    texts = [None if not b else json.dumps(dict(b), sort_keys=True, default=str)
             for b in budgets]
    return texts, unit


def violating_mask(df: "pd.DataFrame") -> Any:
    """Boolean array: which rows of a trials frame broke a constraint after training."""
    import numpy as np

    if VIOLATION not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return np.nan_to_num(df[VIOLATION].to_numpy(dtype=float), nan=0.0) > 0.0


def ranked(df: "pd.DataFrame") -> "pd.DataFrame":
    """Rows of a trials frame that may be a best trial or on a Pareto front: candidates
    with a result (`memnas.store.roles.candidates`: completed or cached, no supernet
    run; so never an infeasible trial) that broke no constraint."""
    done = candidates(df)
    return done[~violating_mask(done)]


def not_violating(costs: Any) -> Any:
    """SQL condition on a trials ``costs`` JSON column: the trial broke no constraint."""
    return sa.func.coalesce(costs[VIOLATION].as_float(), 0.0) <= 0.0


def _decode(texts: list[Any]) -> list[dict[str, Any] | None]:
    """Budgets read as JSON text (or already decoded), None where absent or empty."""
    at = [i for i, t in enumerate(texts) if t is not None]
    out: list[dict[str, Any] | None] = [None] * len(texts)
    try:  # one json.loads for them all: 100k budgets in a few ms
        found = json.loads(f"[{','.join(texts[i] for i in at)}]") if at else []
    except (TypeError, ValueError):
        found = [json.loads(t) if isinstance(t, (str, bytes)) else t for t in
                 (texts[i] for i in at)]
    for i, d in zip(at, found):
        out[i] = d if isinstance(d, dict) and d else None
    return out


def rung_columns(out: "pd.DataFrame") -> str | None:
    """Turns a trials frame's read ``budget`` (JSON text) and ``parent_id`` (when the
    store has them) into its ``budget`` (`budget_column`) and ``parent`` (a trial number,
    NA for none) columns, in place; returns the budgets' unit. Needs ``id`` and ``number``."""
    import numpy as np
    import pandas as pd

    raw = list(out.pop("budget")) if "budget" in out else [None] * len(out)
    values, unit = budget_column(_decode(raw))
    out["budget"] = np.array(values, dtype=float) if all(isinstance(v, float) for v in values) \
        else pd.Series(values, index=out.index, dtype=object)
    parent = pd.to_numeric(out.pop("parent_id"), errors="coerce") if "parent_id" in out \
        else pd.Series(np.nan, index=out.index)
    numbers = pd.Series(out["number"].to_numpy(), index=out["id"].to_numpy())
    out["parent"] = parent.map(numbers).astype("Int64")
    return unit
