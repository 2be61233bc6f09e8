"""The records every part of memnas shares: a trial's status and the outcome of running it.

One definition each, imported by the runner, the store, the equivalence cache and the
dashboard; nothing here imports the rest of memnas.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping


class TrialStatus(str, enum.Enum):
    """A trial's status; a ``str`` enum, so stored values and comparisons stay plain text.

    ``pending`` (stored, not started), ``running``, and the finished ones:
    ``completed`` (evaluated), ``failed`` (no result: the reason is in ``error``),
    ``cached`` (the equivalence cache reused a twin's result) and ``infeasible`` (its
    costs known before training broke the experiment's constraints: never trained).
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CACHED = "cached"
    INFEASIBLE = "infeasible"

    __str__ = str.__str__          # f"{status}" and str(status) give the stored value
    __format__ = str.__format__


class ExperimentStatus(str, enum.Enum):
    """An experiment's status: ``created``, ``running`` (a driver holds it),
    ``completed`` (its last run ended with nothing in flight) or ``interrupted``."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"

    __str__ = str.__str__
    __format__ = str.__format__


FINISHED = frozenset({TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.CACHED,
                      TrialStatus.INFEASIBLE})
"""Statuses of trials that will not run again."""

WITH_RESULT = frozenset({TrialStatus.COMPLETED, TrialStatus.CACHED})
"""Statuses of trials that have metrics (a cached trial reuses a twin's result)."""

FED_BACK = WITH_RESULT | {TrialStatus.INFEASIBLE}
"""Statuses of trials the algorithm was told about (an infeasible one with a penalty)."""

TRIAL_STATUSES = tuple(s.value for s in TrialStatus)
"""Every status's stored value, in lifecycle order."""

SUPERNET_METRIC = "supernet"
"""The metric an evaluator sets to 1 on the run of a weight-sharing supernet (sharpDARTS's
`SupernetEvaluator`): that trial measured the mixed network, not its candidate, so it is
never a best trial nor on a Pareto front (see `is_supernet`)."""


OOM = "oom"
"""`Outcome.error_kind` of a trial whose evaluator ran out of GPU memory (a
``torch.cuda.OutOfMemoryError``, or a ``RuntimeError`` saying "CUDA out of memory")."""

BATCH_SCALE = "batch_scale"
"""The cost naming the ``Context.batch_scale`` a trial ran with, stored only when it is not
1: a trial run again with half its batch size after running out of GPU memory
(``Experiment(oom_retry=True)``)."""


def is_supernet(values: Mapping[str, Any]) -> bool:
    """Whether a trial's metrics (or values) mark it as a supernet run, not a candidate."""
    flag = values.get(SUPERNET_METRIC)
    return isinstance(flag, (int, float)) and flag == 1


@dataclasses.dataclass
class Outcome:
    """What became of one run of a trial: built by a worker, the cache or the driver,
    stored by `SearchState` and fed back to the algorithm.

    Attributes:
      status: completed, failed or cached.
      metrics: objective metrics (a failed trial may keep what it reported).
      costs: cost metrics.
      curve: curve points ``{"step", "name", "value"}`` reported on the way.
      error: why a failed trial has no result (a traceback or a one-line reason).
      node: where it ran (``host`` or ``host:ray-node-id``).
      wall_time: seconds the evaluation took.
      artifact: the evaluator's ``Measurement.artifact``, if any.
      cached_from: for a cached (or twin-failed) trial, the id of the trial it reused.
      cache_kind: what a stored evaluation it reused shares with it: ``duplicate`` (the
        same candidate), ``canonical`` (the same canonical form) or ``functional`` (the
        same functional hash only), ``hit`` in stores written before kinds were; or
        ``attached`` (a twin that was running).
      saved_time: seconds of evaluation the cache saved.
      error_kind: what kind of failure, for the runner to act on: `OOM` (out of GPU
        memory), or None (any other, or none).
    """

    status: TrialStatus
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    costs: dict[str, float] = dataclasses.field(default_factory=dict)
    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None
    node: str | None = None
    wall_time: float | None = None
    artifact: dict[str, Any] | None = None
    cached_from: int | None = None
    cache_kind: str | None = None
    saved_time: float | None = None
    error_kind: str | None = None

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)

    @classmethod
    def failed(cls, reason: str, node: str | None = None, **fields: Any) -> "Outcome":
        """An outcome for a trial that produced no result (worker died, timed out, ...)."""
        return cls(TrialStatus.FAILED, error=reason, node=node, **fields)

    @property
    def values(self) -> dict[str, float]:
        """Metrics and costs in one mapping (metrics win on a name clash)."""
        return {**self.costs, **self.metrics}

    def replace(self, **changes: Any) -> "Outcome":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the artifact left out: it travels as .npz bytes)."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        out.pop("artifact")
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any],
                  artifact: dict[str, Any] | None = None) -> "Outcome":
        """The inverse of `to_json`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names}, artifact=artifact)


def values_of(trial: Mapping[str, Any]) -> dict[str, float]:
    """A stored trial's metrics and costs in one mapping (metrics win on a clash)."""
    return {**(trial.get("costs") or {}), **(trial.get("metrics") or {})}


def timed_out_reason(limit: float, seconds: float | None = None) -> str:
    """The one wording of a trial failed for its time limit.

    Args:
      limit: the experiment's ``timeout_s``.
      seconds: how long the evaluation ran, or None when it was still running (stopped
        from outside, by the driver).
    """
    ran = "still running after" if seconds is None else f"ran {seconds:.1f} s, over"
    return f"timed out: {ran} the time limit of {limit} s"


def out_of_memory_reason(peak: float | None = None, total: float | None = None,
                         share: float | None = None, batch_scale: float = 1.0) -> str:
    """The one wording of a trial failed for running out of GPU memory, on one line:
    ``out of GPU memory (peak 30.12 GiB of 34.50 GiB)``.

    Args:
      peak: the most bytes PyTorch held for tensors during the trial
        (``torch.cuda.max_memory_allocated``), or None where unknown (no CUDA here: an
        evaluator raised the error itself): ``(peak unknown)``.
      total: the GPU's bytes (``get_device_properties(...).total_memory``).
      share: the fraction of them the trial was capped at when it shared the GPU (see
        `memnas.runner._trial.memory_fraction`), or None: then ``of`` names the share's
        bytes and the GPU's follow.
      batch_scale: the trial's ``Context.batch_scale``, named when it is not 1.
    """
    gib = 2.0 ** 30
    if peak is None or not total:
        text = "out of GPU memory (peak unknown)"
    elif share is None:
        text = f"out of GPU memory (peak {peak / gib:.2f} GiB of {total / gib:.2f} GiB)"
    else:
        text = (f"out of GPU memory (peak {peak / gib:.2f} GiB of {share * total / gib:.2f} "
                f"GiB, its {share:.3g} share of the GPU's {total / gib:.2f} GiB)")
    return text if batch_scale == 1 else f"{text} at batch scale {batch_scale:g}"


def error_summary(text: str | None) -> str:
    """An error in one line: the last non-empty line of a traceback (its exception), or ""."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
