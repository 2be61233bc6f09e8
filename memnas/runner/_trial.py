"""The function every executor runs for one trial: call the evaluator, catch what it raises."""

from __future__ import annotations

import socket
import sys
import time
import traceback
from typing import Any, Callable

from memnas.measurement import Context, Measurement
from memnas.records import Outcome, TrialStatus


def run_trial(evaluator: Callable[[Any, Context], Any], candidate: Any,
              ctx: Context) -> Outcome:
    """Evaluates one candidate and returns its `Outcome`; never raises.

    Completed with the evaluator's metrics, costs and artifact; or failed with the
    traceback, or with the reason the result was refused (non-finite values).
    """
    start = time.perf_counter()
    outcome = Outcome(TrialStatus.FAILED, node=node_name())
    try:
        m = Measurement.coerce(evaluator(candidate, ctx))
    except Exception:  # the evaluator's failure becomes a failed trial, not a crash
        outcome.error = traceback.format_exc(limit=20)
    else:
        outcome.metrics, outcome.costs = m.metrics, m.costs
        bad = m.non_finite()
        if bad:
            outcome.error = (f"evaluator returned non-finite values for {bad}: "
                             f"{ {k: m.values()[k] for k in bad} }")
        else:
            outcome.status, outcome.artifact = TrialStatus.COMPLETED, m.artifact
        # Points sent through ctx.report and returned in m.curve too are kept once.
        seen = {(p["step"], p["name"]) for p in ctx.curve}
        ctx.curve.extend(p for p in m.curve if (p["step"], p["name"]) not in seen)
        if m.wall_time is not None:
            outcome.wall_time = float(m.wall_time)
    if outcome.wall_time is None:
        outcome.wall_time = time.perf_counter() - start
    outcome.curve = ctx.curve
    return outcome


def node_name() -> str:
    """``host`` or, inside a Ray worker, ``host:ray-node-id`` (first 12 hex digits)."""
    ray = sys.modules.get("ray")  # never import Ray just to ask
    host = socket.gethostname()
    try:
        if ray is not None and ray.is_initialized():
            return f"{host}:{ray.get_runtime_context().get_node_id()[:12]}"
    except Exception:  # a node name is informative only
        pass
    return host


def run_trials(evaluator: Callable[[Any, Context], Any],
               batch: list[tuple[Any, Context]]) -> list[Outcome]:
    """`run_trial` for each ``(candidate, ctx)`` of a batch, in order: one task, several
    short trials (see `memnas.runner.driver.BatchSizer`)."""
    return [run_trial(evaluator, candidate, ctx) for candidate, ctx in batch]
