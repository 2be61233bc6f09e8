"""What an evaluator receives (`Context`) and returns (`Measurement`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import reprlib
from typing import Any, Mapping

import numpy as np

from memnas.errors import MemnasError

MAX_VALUES = 1000
"""Most metrics and costs, together, one evaluation may return; more is refused (a
result is a handful of numbers: tables belong in its artifact)."""

MAX_CURVE_POINTS = 100_000
"""Most curve points one trial may report (``ctx.report`` and ``Measurement.curve``)."""

MAX_NAME_LENGTH = 100
"""Longest name of a metric, cost or curve point (the store's column for curve names)."""

_STEP_RANGE = 2**31  # curve steps are stored in a 32-bit integer column


class MeasurementError(MemnasError, TypeError):
    """An evaluator returned or reported a value memnas cannot store (a string, None, an
    array of several numbers, too many metrics, ...). Its message is one line naming the
    value and its type; `memnas.runner` stores it as the trial's error and goes on."""


@dataclasses.dataclass
class Measurement:
    """The result of evaluating one candidate.

    Attributes:
      metrics: Objective metrics, e.g. ``{"accuracy": 0.93}``.
      costs: Cost metrics, e.g. ``{"params": 12345, "latency_ms": 1.2}``.
      curve: Intermediate points ``{"step": int, "name": str, "value": float}``.
      wall_time: Seconds the evaluation took (filled in by the runner if None).
      artifact: Optional JSON-able payload for algorithms that need more than a
        scalar back, or a checkpoint asked for by ``Context.checkpoint``. Never
        pickled into the store.

    An evaluator that resumed from ``Context.resume`` sets the cost ``budget_spent``
    (budget units it really trained, e.g. steps past the checkpoint); memnas fills it
    in as the trial's whole budget otherwise.
    """

    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    costs: dict[str, float] = dataclasses.field(default_factory=dict)
    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    wall_time: float | None = None
    artifact: dict[str, Any] | None = None

    def values(self) -> dict[str, float]:
        """Metrics and costs in one mapping (metrics win on a name clash)."""
        return {**self.costs, **self.metrics}

    @classmethod
    def coerce(cls, value: Any) -> "Measurement":
        """Turns an evaluator's return value into a new, checked Measurement.

        Accepts a Measurement or a mapping of metric names to numbers. A number is what
        `as_number` accepts: Python and NumPy numbers, bools (as 0 and 1) and one-element
        NumPy arrays or torch tensors, on any device (so a result never carries a tensor
        back from its worker). Curve points are checked as ``Context.report`` checks
        them. The artifact is not looked into here (see `memnas.store.artifacts.checked`).

        Raises:
          MeasurementError: (a ``TypeError``) ``value`` is neither; a metric is not a
            number or its name not a string of at most `MAX_NAME_LENGTH` characters;
            there are more than `MAX_VALUES` metrics and costs; a curve point or
            ``wall_time`` is malformed. The message is one line naming the value.
        """
        if isinstance(value, Measurement):
            metrics, costs, curve = value.metrics, value.costs, value.curve
        elif isinstance(value, Mapping):
            metrics, costs, curve = value, {}, []
        else:
            hint = " (did the evaluator forget to return?)" if value is None else ""
            raise MeasurementError(
                "evaluator must return a memnas.Measurement or a dict of numbers, got "
                f"{describe(value)}{hint}")
        for field, group in (("metrics", metrics), ("costs", costs)):
            if not isinstance(group, Mapping):
                raise MeasurementError(f"Measurement.{field} must be a dict of numbers, got "
                                       f"{describe(group)}")
        if len(metrics) + len(costs) > MAX_VALUES:
            raise MeasurementError(
                f"evaluator returned {len(metrics) + len(costs)} metrics and costs, more than "
                f"the {MAX_VALUES} memnas stores (memnas.measurement.MAX_VALUES)")
        if not isinstance(curve, (list, tuple)):
            raise MeasurementError(f"Measurement.curve must be a list of points, got "
                                   f"{describe(curve)}")
        wall_time = value.wall_time if isinstance(value, Measurement) else None
        if wall_time is not None:
            wall_time = as_number(wall_time, "Measurement.wall_time")
            if not (math.isfinite(wall_time) and wall_time >= 0):
                raise MeasurementError(f"Measurement.wall_time must be seconds >= 0, got "
                                       f"{wall_time!r}")
        return Measurement(
            metrics={_name(k, "metric"): as_number(v, f"metric {k!r}") for k, v in metrics.items()},
            costs={_name(k, "cost"): as_number(v, f"cost {k!r}") for k, v in costs.items()},
            curve=curve_points(curve, "Measurement.curve"), wall_time=wall_time,
            artifact=value.artifact if isinstance(value, Measurement) else None)

    def non_finite(self) -> list[str]:
        """Names of metrics or costs that are NaN or infinite."""
        return [k for k, v in self.values().items() if not math.isfinite(v)]


@dataclasses.dataclass
class Context:
    """What the runner tells an evaluator about the trial it runs.

    Attributes:
      seed: Seed for everything random in this trial.
      trial: The trial's number within its experiment.
      experiment: The experiment's name.
      budget: Free-form budget, e.g. ``{"steps": 200}``; evaluators read what they know.
      num_cpus: CPUs reserved for the trial (use for ``torch.set_num_threads``).
      num_gpus: GPUs reserved for the trial (fractions allowed).
      artifact: What the algorithm gave this trial beside its candidate (e.g. a
        pruning mask and rewind weights), or None; see `memnas.runner.state`.
      resume: Multi-fidelity: the output artifact (a checkpoint) of the trial this one
        continues, a lower rung of the same candidate, or None. An evaluator that can
        resume loads it and trains only from its step up to ``budget``; one that
        cannot retrains from scratch (its docstring says so).
      checkpoint: Multi-fidelity: True when this trial may be continued at a higher
        budget; an evaluator that can resume then returns a checkpoint (model and
        optimiser state, the step reached) as its ``Measurement.artifact``.
      batch_scale: What the trial's batch size is multiplied by: 1, or 0.5 when the
        trial runs again after running out of GPU memory (``Experiment(oom_retry=True)``).
        Trainers multiply their batch size by it (keeping at least one example a step);
        an evaluator of its own should do the same. A run at another scale than 1 is
        stored with the cost ``batch_scale``.
    """

    seed: int = 0
    trial: int = 0
    experiment: str = ""
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_cpus: float = 1
    num_gpus: float = 0
    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    artifact: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None
    checkpoint: bool = False
    batch_scale: float = 1.0

    @property
    def device(self) -> str:
        """``"cuda"`` when the worker was given a GPU and torch sees one, else ``"cpu"``.

        Ray sets ``CUDA_VISIBLE_DEVICES`` for a trial given GPUs (``num_gpus`` > 0,
        fractions included: several trials then share one GPU, each capped at its share
        of the memory by `memnas.runner`); the first visible device is the trial's.
        """
        if self.num_gpus > 0 or os.environ.get("CUDA_VISIBLE_DEVICES"):
            try:
                import torch

                if torch.cuda.is_available():
                    return "cuda"
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
        return "cpu"

    def report(self, step: int, **metrics: float) -> None:
        """Records intermediate metrics at ``step`` (training curves).

        A value that is not finite (a diverged run's NaN loss) is left out, as memnas's
        trainers do: the store keeps finite numbers only.

        Raises:
          MeasurementError: ``step`` is not an integer (a whole number, as 3.0 is, within
            32 bits), a value is not a number (see `as_number`), a name is longer than
            `MAX_NAME_LENGTH`, or the trial would hold more than `MAX_CURVE_POINTS`
            points. The trial fails with that one line.
        """
        self.curve.extend(curve_points(
            [{"step": step, "name": k, "value": v} for k, v in metrics.items()],
            "ctx.report", already=len(self.curve)))


def costs_before_training(evaluator: Any, candidate: Any) -> dict[str, float]:
    """The costs an evaluator knows before training ``candidate`` (params, ``state_bytes``,
    FLOPs): its ``costs(candidate)`` hook's answer as floats, or {} when it has none.

    memnas's trainers implement the hook. It must be cheap (it runs on the driver before
    a trial is launched, to check constraints) and give the same values the evaluation
    stores.
    """
    hook = getattr(evaluator, "costs", None)
    if not callable(hook):
        return {}
    return {str(k): float(v) for k, v in dict(hook(candidate)).items()}


def as_number(value: Any, what: str) -> float:
    """``value`` as a float: a Python or NumPy real number, a bool (1.0 or 0.0), or a
    NumPy array or torch tensor of exactly one element (read with ``.item()``, moved off
    its device first, so a CUDA tensor is fine).

    Raises:
      MeasurementError: anything else: a string, None, a container, a complex number, an
        array or tensor of several elements (which of them would be meant?), an integer
        too large for a float. One line naming ``what``, the value and its type.
    """
    number = value
    if isinstance(value, np.ndarray) or _is_tensor(value):
        size = value.size if isinstance(value, np.ndarray) else value.numel()
        if size != 1:
            raise MeasurementError(f"{what} must be a number, got {describe(value)} ("
                                   f"{size} elements: which one is meant is ambiguous)")
        number = value.item() if isinstance(value, np.ndarray) else \
            value.detach().cpu().item()
    if not isinstance(number, (numbers.Real, np.bool_)) or isinstance(number, (str, bytes)):
        raise MeasurementError(f"{what} must be a number, got {describe(value)}")
    try:
        return float(number)
    except (OverflowError, TypeError, ValueError) as e:
        raise MeasurementError(f"{what} must be a number that fits a float, got "
                               f"{describe(value)} ({type(e).__name__})") from None


def curve_points(points: Any, what: str, already: int = 0) -> list[dict[str, Any]]:
    """Checked copies ``{"step": int, "name": str, "value": float}`` of curve points, the
    non-finite ones left out (see `Context.report`).

    Args:
      points: the points, mappings with ``step``, ``name`` and ``value``.
      what: where they come from, for the message (``"ctx.report"``).
      already: points the trial holds already (counted against `MAX_CURVE_POINTS`).

    Raises:
      MeasurementError: a malformed point (one line naming it), or too many.
    """
    if already + len(points) > MAX_CURVE_POINTS:
        raise MeasurementError(f"{what}: {already + len(points)} curve points, more than the "
                               f"{MAX_CURVE_POINTS} memnas stores for a trial "
                               f"(memnas.measurement.MAX_CURVE_POINTS)")
    out = []
    for p in points:
        if not isinstance(p, Mapping) or not {"step", "name", "value"} <= set(p):
            raise MeasurementError(f"{what}: a curve point must be a dict with step, name and "
                                   f"value, got {describe(p)}")
        name = _name(p["name"], f"{what}: curve point")
        step = as_number(p["step"], f"{what}: the step of {name!r}")
        if not (math.isfinite(step) and step == int(step) and abs(step) < _STEP_RANGE):
            raise MeasurementError(f"{what}: the step of {name!r} must be a whole number "
                                   f"below 2**31 in size, got {describe(p['step'])}")
        value = as_number(p["value"], f"{what}: {name!r} at step {int(step)}")
        if math.isfinite(value):
            out.append({"step": int(step), "name": name, "value": value})
    return out


def describe(value: Any) -> str:
    """A short one-line view of any value with its type, for error messages:
    ``"ndarray of shape [3]: array([1., 2., 3.])"``, ``"str: 'high'"``."""
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if (isinstance(value, np.ndarray) or _is_tensor(value)) and shape is not None:
        kind = f"{kind} of shape {list(shape)}"
    text = " ".join(_REPR.repr(value).split())
    return f"{kind}: {text if len(text) <= 80 else text[:77] + '...'}"


def _name(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH \
            or not key.isprintable():
        raise MeasurementError(f"{what} names must be printable strings of 1 to "
                               f"{MAX_NAME_LENGTH} characters, got {describe(key)}")
    return key


def _is_tensor(value: Any) -> bool:
    """A torch tensor, told without importing torch."""
    return type(value).__module__.startswith("torch") and hasattr(value, "numel") \
        and hasattr(value, "detach")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist = 2, 4, 4
