"""The function every executor runs for one trial: call the evaluator, catch what it raises."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from memnas.measurement import Context, Measurement, MeasurementError, curve_points
from memnas.records import OOM, Outcome, TrialStatus, out_of_memory_reason, timed_out_reason
from memnas.store import artifacts

CONTEXT_RESERVE_BYTES = 512 * 2**20
"""GPU memory a trial's process holds outside PyTorch's allocator (its CUDA context, the
cuBLAS and cuDNN handles), left out of each share of a GPU several trials share."""

_FALLBACK_MARGIN = 0.01  # the reserve as a fraction, for a GPU of unknown size

_capped: list[float | None] = [None]  # the memory fraction this process set, None: none


class _OverTime(BaseException):
    """Raised inside an evaluator at its time limit (a BaseException, so an evaluator's
    ``except Exception`` does not swallow it)."""


def run_trial(evaluator: Callable[[Any, Context], Any], candidate: Any,
              ctx: Context, time_limit: float | None = None) -> Outcome:
    """Evaluates one candidate and returns its `Outcome`; never raises.

    Completed with the evaluator's metrics, costs and artifact; or failed with the
    traceback, with the reason the result was refused, or for its time limit.

    An evaluator that runs out of GPU memory (``torch.cuda.OutOfMemoryError``, or a
    ``RuntimeError`` saying "CUDA out of memory") fails the trial with one line,
    `memnas.records.out_of_memory_reason`, and ``error_kind`` `memnas.records.OOM` (the
    runner may run it again with half the batch: ``Experiment(oom_retry=True)``).
    After a trial given GPUs (or out of GPU memory) the memory PyTorch cached for it is
    given back to the GPU: a Ray worker waiting for its next trial then holds only its
    CUDA context, not memory the trials sharing the GPU may need.

    Before the evaluator runs, a trial given GPUs gets the GPU ready (`prepare_gpu`):
    its share of the memory capped when it shares the GPU, and the peak-memory counters
    of PyTorch reset, so ``torch.cuda.max_memory_allocated()`` is this trial's peak.

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
    prepare_gpu(ctx.num_gpus)
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
    except Exception as e:
        if not is_out_of_memory(e):  # the evaluator's failure: a failed trial, not a crash
            outcome.error = traceback.format_exc(limit=20)
        else:  # one line, and a kind the runner can act on (Experiment(oom_retry=True))
            outcome.error = _oom_reason(ctx.batch_scale)
            outcome.error_kind = OOM
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
    if outcome.error_kind == OOM or ctx.num_gpus > 0:  # its tensors are garbage now
        _release_gpu(collect=outcome.error_kind == OOM)
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


def memory_fraction(num_gpus: float, total_bytes: int | None = None) -> float | None:
    """The fraction of its GPU's memory a trial given ``num_gpus`` may allocate, or None
    for no cap (no GPU, or one or more whole GPUs).

    A trial with ``0 < num_gpus < 1`` shares its GPU with others (Ray packs ``1 /
    num_gpus`` of them on it): PyTorch's allocator in its process is capped at its
    share, less `CONTEXT_RESERVE_BYTES` (what each process holds outside the allocator,
    so that the shares and the processes' CUDA contexts fit on the GPU together;
    ``_FALLBACK_MARGIN`` of the GPU when its size is unknown), and never below half
    its share. A trial over its cap fails with `memnas.records.OOM` rather than taking
    the memory of the trials beside it.

    Args:
      num_gpus: the trial's ``resources["num_gpus"]``.
      total_bytes: the GPU's memory in bytes, if known.
    """
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) \
            or not 0 < num_gpus < 1:
        return None
    margin = CONTEXT_RESERVE_BYTES / total_bytes if total_bytes and total_bytes > 0 \
        else _FALLBACK_MARGIN
    return max(num_gpus - margin, num_gpus / 2)


def prepare_gpu(num_gpus: float) -> None:
    """Gets this process's GPU ready for a trial given ``num_gpus``; never raises.

    Where PyTorch sees a GPU (Ray set ``CUDA_VISIBLE_DEVICES`` for the trial): caps the
    allocator at the trial's `memory_fraction` (undoing an earlier trial's cap in a
    reused worker when this one has a whole GPU) and resets the peak-memory counters.
    torch is imported here only for a trial given GPUs (its evaluator needs it anyway),
    and CUDA is started only for one, or where an earlier trial of this process started
    it (then the cap is undone and the counters reset for this trial too).
    """
    torch = sys.modules.get("torch")
    try:
        if torch is None and num_gpus > 0 and importlib.util.find_spec("torch") is not None:
            import torch
        if torch is None or not (num_gpus > 0 or torch.cuda.is_initialized()) \
                or not torch.cuda.is_available():
            return
        device = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(device).total_memory
        fraction = memory_fraction(num_gpus, total)
        if fraction != _capped[0]:
            torch.cuda.set_per_process_memory_fraction(1.0 if fraction is None else fraction,
                                                       device)
            _capped[0] = fraction
        torch.cuda.reset_peak_memory_stats(device)
    except Exception:  # a GPU the trial cannot use fails in its evaluator, with its own words
        pass


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is running out of GPU memory: a ``torch.cuda.OutOfMemoryError``
    or a ``RuntimeError`` whose message says "CUDA out of memory"."""
    torch = sys.modules.get("torch")
    kind = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(kind, type) and isinstance(error, kind):
        return True
    return isinstance(error, RuntimeError) and "CUDA out of memory" in str(error)


def _oom_reason(batch_scale: float) -> str:
    """`out_of_memory_reason` with the peak and size of this process's GPU, where known."""
    torch = sys.modules.get("torch")
    peak = total = None
    try:
        if torch is not None and torch.cuda.is_initialized():
            device = torch.cuda.current_device()
            peak = torch.cuda.max_memory_allocated(device)
            total = torch.cuda.get_device_properties(device).total_memory
    except Exception:  # the peak is informative only
        peak = total = None
    return out_of_memory_reason(peak, total, _capped[0] if total else None, batch_scale)


def _release_gpu(collect: bool = False) -> None:
    """Gives the memory PyTorch cached for a finished trial back to the GPU; first
    collects the garbage with ``collect`` (the tensors of a run that failed)."""
    torch = sys.modules.get("torch")
    if collect:
        gc.collect()
    try:
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # nothing more to give back
        pass


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
