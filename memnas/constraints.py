"""Constraints on a search's metrics and costs: checking them, measuring a violation, the penalty."""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["INFEASIBLE_REWARD", "check_constraints", "penalty", "violation"]

OPERATORS = ("<=", ">=")

INFEASIBLE_REWARD = -1e12
"""The reward of a trial with no violation to tell apart: below every real reward.

A trial that breaks a constraint is fed back ``INFEASIBLE_REWARD - violation`` for every
objective. Under Pareto dominance this is Deb's constrained domination: any feasible
trial dominates every infeasible one, and of two infeasible ones the smaller violation
dominates. So every algorithm (NSGA-II, LINAS, MO-ASHA, evolution) handles constraints
without knowing of them."""


def check_constraints(constraints: Any) -> dict[str, tuple[str, float]]:
    """Validates ``{"metric": ("<=" | ">=", bound)}``; returns it with float bounds.

    Raises:
      ValueError: one line naming the bad entry.
    """
    if constraints is None:
        return {}
    if not isinstance(constraints, Mapping):
        raise ValueError(f"constraints must be a dict like {{'state_bytes': ('<=', 65536)}}, "
                         f"got {constraints!r:.80}")
    out: dict[str, tuple[str, float]] = {}
    for name, rule in constraints.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a constraint's metric must be a non-empty string, got {name!r}")
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and rule[0] in OPERATORS):
            raise ValueError(f"constraint on {name!r} must be ('<=' or '>=', bound), got {rule!r}")
        bound = rule[1]
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) \
                or not math.isfinite(bound):
            raise ValueError(f"constraint on {name!r} needs a finite number as bound, "
                             f"got {bound!r}")
        out[name] = (rule[0], float(bound))
    return out


def violation(values: Mapping[str, float],
              constraints: Mapping[str, tuple[str, float]]) -> float:
    """How far ``values`` break ``constraints``: 0 when they hold; else the sum over broken
    constraints of the excess relative to the bound (``|bound|``, at least 1).

    Constraints on metrics ``values`` lacks are skipped: before training only the costs
    are known; after it, a missing metric is the trial's failure, not a violation.
    """
    total = 0.0
    for name, (op, bound) in constraints.items():
        v = values.get(name)
        if v is None or not math.isfinite(float(v)):
            continue
        excess = float(v) - bound if op == "<=" else bound - float(v)
        if excess > 0:
            total += excess / max(abs(bound), 1.0)
    return total


def penalty(amount: float, objectives: int, multi_objective: bool) -> float | tuple[float, ...]:
    """The reward of a trial that breaks constraints by ``amount`` (see `INFEASIBLE_REWARD`)."""
    r = INFEASIBLE_REWARD - amount
    return (r,) * objectives if multi_objective else r
