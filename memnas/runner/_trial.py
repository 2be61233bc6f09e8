"""The function every executor runs for one trial: call the evaluator, catch what it raises."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from memnas.measurement import Context, Measurement, MeasurementError, curve_points
from memnas.records import Outcome, TrialStatus, timed_out_reason
from memnas.store import artifacts


class _OverTime(BaseException):
    """Raised inside an evaluator at its time limit (a BaseException, so an evaluator's
    ``except Exception`` does not swallow it)."""


def run_trial(evaluator: Callable[[Any, Context], Any], candidate: Any,
              ctx: Context, time_limit: float | None = None) -> Outcome:
    """Evaluates one candidate and returns its `Outcome`; never raises.

    Completed with the evaluator's metrics, costs and artifact; or failed with the
    traceback, with the reason the result was refused, or for its time limit.

    A result is checked here, in the worker, before it travels back: what the driver
    gets holds only floats, strings and NumPy arrays (tensors read with ``.item()`` or
    moved to the CPU), so it unpickles anywhere and the store can take it. A value
    memnas cannot store (`memnas.measurement.MeasurementError`: a string or None for a
    result, an array for a metric, too many metrics, a bad ``ctx.report``; non-finite
    metrics; an artifact that is not arrays and JSON or is over
    `memnas.store.artifacts.MAX_ARTIFACT_BYTES`) fails the trial with one line naming it.

    Args:
      evaluator: the experiment's evaluator.
      candidate: the candidate to evaluate.
      ctx: the trial's context.
      time_limit: seconds the evaluator may run, counted from its call here (so a
        worker's start-up does not count); it is stopped at the limit when this runs
        in a main thread (see `_deadline`), else the caller must stop it.
    """
    start = time.perf_counter()
    outcome = Outcome(TrialStatus.FAILED, node=node_name())
    returned: list[dict[str, Any]] = []  # the curve points of the evaluator's Measurement
    try:
        with _deadline(time_limit):
            value = evaluator(candidate, ctx)
    except _OverTime:
        outcome.wall_time = time.perf_counter() - start
        outcome.error = timed_out_reason(time_limit, outcome.wall_time)
    except MeasurementError as e:  # ctx.report refused a value: one line says which
        outcome.error = _one_line(e)
    except Exception:  # the evaluator's failure becomes a failed trial, not a crash
        outcome.error = traceback.format_exc(limit=20)
    else:
        try:
            m = Measurement.coerce(value)
            artifact = None if m.artifact is None else artifacts.checked(m.artifact)
        except MeasurementError as e:
            outcome.error = _one_line(e)
        except Exception as e:  # an artifact encode refuses, a value that raises when read
            what = "artifact" if isinstance(value, Measurement) and \
                value.artifact is not None else "result"
            outcome.error = f"the evaluator's {what} cannot be stored: {_one_line(e, True)}"
        else:
            _completed(outcome, m, artifact)
            returned = m.curve
    if outcome.wall_time is None:
        outcome.wall_time = time.perf_counter() - start
    try:  # ctx.report checked its points; these are checked again in case of a hand-made one
        curve = curve_points(ctx.curve, "ctx.curve")
        seen = {(p["step"], p["name"]) for p in curve}  # points reported and returned: once
        curve += curve_points([p for p in returned if (p["step"], p["name"]) not in seen],
                              "Measurement.curve", already=len(curve))
    except MeasurementError as e:
        curve = []
        if outcome.status == TrialStatus.COMPLETED:
            outcome.status, outcome.artifact = TrialStatus.FAILED, None
            outcome.error = _one_line(e)
    outcome.curve = curve
    return outcome


def _completed(outcome: Outcome, m: Measurement, artifact: dict[str, Any] | None) -> None:
    """Fills ``outcome`` from a checked measurement: completed unless a value is not finite."""
    outcome.metrics, outcome.costs = m.metrics, m.costs
    bad = m.non_finite()
    if bad:
        outcome.error = (f"evaluator returned non-finite values for {bad}: "
                         f"{ {k: m.values()[k] for k in bad} }")
    else:
        outcome.status, outcome.artifact = TrialStatus.COMPLETED, artifact
    if m.wall_time is not None:
        outcome.wall_time = m.wall_time


def _one_line(error: BaseException, with_type: bool = False) -> str:
    """An error's message on one line (at most 500 characters), with its type if asked."""
    text = " ".join(str(error).split())
    if with_type or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raises `_OverTime` in the block after ``seconds``, by SIGALRM.

    Only in the main thread of a process with ``setitimer`` (a Ray task's worker, the
    in-process executor's driver); elsewhere it does nothing. The previous SIGALRM
    handler is put back, and a timer that was armed before is armed again with what
    is left of it, so the process (a reused Ray worker, a test runner's own alarm)
    carries on as before.
    """
    if not seconds or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield
        return

    def over(signum: int, frame: Any) -> None:
        raise _OverTime()

    armed = time.monotonic()
    before, interval = signal.getitimer(signal.ITIMER_REAL)
    previous = signal.signal(signal.SIGALRM, over)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
            if before > 0:
                left = before - (time.monotonic() - armed)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), interval)


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
               batch: list[tuple[Any, Context]],
               time_limit: float | None = None) -> list[Outcome]:
    """`run_trial` for each ``(candidate, ctx)`` of a batch, in order: one task, several
    short trials (see `memnas.runner.driver.BatchSizer`), each with ``time_limit``."""
    return [run_trial(evaluator, candidate, ctx, time_limit) for candidate, ctx in batch]
