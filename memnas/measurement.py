"""What an evaluator receives (`Context`) and returns (`Measurement`)."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping


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
        """Turns an evaluator's return value into a Measurement.

        Accepts a Measurement or a mapping of metric names to numbers.

        Raises:
          TypeError: if ``value`` is neither, or a metric is not a number.
        """
        if isinstance(value, Measurement):
            m = value
        elif isinstance(value, Mapping):
            m = Measurement(metrics=dict(value))
        else:
            raise TypeError(
                "evaluator must return a memnas.Measurement or a dict of floats, "
                f"got {type(value).__name__}: {value!r:.80}"
            )
        for group in (m.metrics, m.costs):
            for k, v in list(group.items()):
                try:
                    group[k] = float(v)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"metric {k!r} must be a number, got {type(v).__name__}: {v!r:.80}"
                    ) from None
        return m

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

    @property
    def device(self) -> str:
        """``"cuda"`` when the worker was given a GPU and torch sees one, else ``"cpu"``."""
        if self.num_gpus > 0 or os.environ.get("CUDA_VISIBLE_DEVICES"):
            try:
                import torch

                if torch.cuda.is_available():
                    return "cuda"
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
        return "cpu"

    def report(self, step: int, **metrics: float) -> None:
        """Records intermediate metrics at ``step`` (training curves)."""
        for name, value in metrics.items():
            self.curve.append({"step": int(step), "name": name, "value": float(value)})


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
