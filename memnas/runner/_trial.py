"""The function every executor runs for one trial: call the evaluator, catch what it raises."""

from __future__ import annotations

import socket
import sys
import time
import traceback
from typing import Any, Callable

from memnas.measurement import Context, Measurement


def run_trial(evaluator: Callable[[Any, Context], Any], candidate: Any,
              ctx: Context) -> dict[str, Any]:
    """Evaluates one candidate and returns a JSON-able outcome; never raises.

    The outcome has ``status`` ("completed" or "failed"), ``metrics``, ``costs``,
    ``curve``, ``wall_time``, ``node`` and, for failures, ``error`` (a traceback or
    the reason the result was refused).
    """
    start = time.perf_counter()
    out: dict[str, Any] = {"node": node_name(), "metrics": {}, "costs": {}}
    try:
        m = Measurement.coerce(evaluator(candidate, ctx))
    except Exception:  # the evaluator's failure becomes a failed trial, not a crash
        out.update(status="failed", error=traceback.format_exc(limit=20))
    else:
        bad = m.non_finite()
        if bad:
            out.update(status="failed", metrics=m.metrics, costs=m.costs,
                       error=f"evaluator returned non-finite values for {bad}: "
                             f"{ {k: m.values()[k] for k in bad} }")
        else:
            out.update(status="completed", metrics=m.metrics, costs=m.costs,
                       artifact=m.artifact)
        # Points sent through ctx.report and returned in m.curve too are kept once.
        seen = {(p["step"], p["name"]) for p in ctx.curve}
        ctx.curve.extend(p for p in m.curve if (p["step"], p["name"]) not in seen)
        if m.wall_time is not None:
            out["wall_time"] = float(m.wall_time)
    out.setdefault("wall_time", time.perf_counter() - start)
    out["curve"] = ctx.curve
    return out


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
               batch: list[tuple[Any, Context]]) -> list[dict[str, Any]]:
    """`run_trial` for each ``(candidate, ctx)`` of a batch, in order: one task, several
    short trials (see `memnas.runner.driver.BatchSizer`)."""
    return [run_trial(evaluator, candidate, ctx) for candidate, ctx in batch]
