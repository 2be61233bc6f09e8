"""A toy multi-fidelity evaluator that resumes from checkpoints, and its experiments."""

from __future__ import annotations

import dataclasses

import memnas
import toyspace
from memnas import Measurement

CALLS: list[tuple[int, int, int | None]] = []
"""(trial, steps, steps resumed from) of every evaluation in this process."""


def evaluate(p, ctx):
    """accuracy grows with the steps trained toward `toyspace.evaluate`'s; resumes from
    ``ctx.resume["steps"]`` and returns a checkpoint when asked."""
    steps = int(ctx.budget.get("steps", 9))
    start = int(ctx.resume["steps"]) if ctx.resume else 0
    CALLS.append((ctx.trial, steps, start if ctx.resume else None))
    full = toyspace.evaluate(p, ctx)
    m = Measurement(metrics={"accuracy": full["accuracy"] * steps / (steps + 3.0)},
                    costs={"params": full["params"], "budget_spent": float(steps - start)})
    if ctx.checkpoint:
        m.artifact = {"steps": steps, "x": float(p.x)}
    return m


def evaluate_plain(p, ctx):
    """The same without resuming: retrains from scratch (sets no budget_spent)."""
    steps = int(ctx.budget.get("steps", 9))
    full = toyspace.evaluate(p, ctx)
    return {"accuracy": full["accuracy"] * steps / (steps + 3.0), "params": full["params"]}


def experiment(url: str, name: str, algorithm: str = "asha", **kw) -> memnas.Experiment:
    options = {"min_budget": 1, "max_budget": 9, "eta": 3, **kw.pop("algorithm_options", {})}
    return memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=kw.pop(
        "evaluator", evaluate), algorithm=algorithm, algorithm_options=options, seed=3,
        store=url, objectives=kw.pop("objectives", {"accuracy": "max"}), **kw)


@dataclasses.dataclass(frozen=True)
class CostedToy:
    """`toyspace.evaluate` with a ``costs(candidate)`` hook (params known before training);
    counts its evaluations in ``EVALUATED``."""

    def costs(self, p):
        return {"params": float(10 * p.y)}

    def __call__(self, p, ctx):
        EVALUATED.append((p.x, p.y, p.kind))
        return toyspace.evaluate(p, ctx)


EVALUATED: list[tuple] = []


def trials(url: str, name: str) -> list[dict]:
    """The stored trials of experiment ``name``, read read-only."""
    from memnas.store import Store

    s = Store(url, read_only=True)
    try:
        return s.trials(s.experiment(name)["id"])
    finally:
        s.close()
