"""The worker side of a Tune run: one memnas trial as a Tune function trainable.

Reports cross Tune as flat results: the curve points of each ``ctx.report`` (shown to
the scheduler under their names) and, at the end, the trial's `Outcome` as JSON with
its artifact as base64 ``.npz``. Nothing here touches the store.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any, Callable

from ray import tune

from memnas.measurement import Context
from memnas.records import Outcome
from memnas.runner._trial import node_name, run_trial
from memnas.store import artifacts

KEY = "memnas"                   # the trial's entry in Tune's config
STEP = "memnas_step"             # the evaluator's step of a forwarded report
POINTS = "memnas_points"         # the report's curve points, as JSON
DONE = "memnas_done"             # marks the final report of a trial that ran to its end
OUTCOME = "memnas_outcome"       # the trial's `Outcome`, as JSON
ARTIFACT = "memnas_artifact"     # its artifact, as base64 .npz bytes
NODE = "memnas_node"             # where the trial runs (`node_name()`)
STOPPED_EARLY = "stopped_early"  # metric set to 1.0 on trials a scheduler stopped

# Keys Tune fills in or reads itself: a metric of such a name stays in the curve and
# the store but is not shown to Tune.
_TUNE_KEYS = frozenset({
    "done", "training_iteration", "iterations_since_restore", "time_this_iter_s",
    "time_total_s", "time_since_restore", "timestamp", "timesteps_total",
    "timesteps_since_restore", "episodes_total", "trial_id", "experiment_id", "date",
    "pid", "hostname", "node_ip", "config", "should_checkpoint", "checkpoint_dir_name",
    "experiment_tag", "warmup_time", "episode_reward_mean", "mean_accuracy", "mean_loss",
    "neg_mean_loss"})


class TrialSpec:
    """What Tune hands the trainable for one memnas trial (kept out of Tune's tags)."""

    def __init__(self, number: int, candidate: Any, ctx: Context) -> None:
        self.number, self.candidate, self.ctx = number, candidate, ctx

    def __repr__(self) -> str:
        return f"trial{self.number}"


class _TuneContext(Context):
    """A `Context` whose ``report`` also sends each report to Tune's scheduler."""

    def report(self, step: int, **metrics: float) -> None:
        start = len(self.curve)
        super().report(step, **metrics)
        points = self.curve[start:]
        tune.report({**{p["name"]: p["value"] for p in points if is_shown(p["name"])},
                     STEP: int(step), POINTS: json.dumps(points), NODE: _node()})


_NODE_NAME: list[str] = []


def _node() -> str:
    if not _NODE_NAME:
        _NODE_NAME.append(node_name())
    return _NODE_NAME[0]


def is_shown(name: str) -> bool:
    """Whether a metric of this name is shown to Tune (not one of Tune's or memnas's keys)."""
    return name not in _TUNE_KEYS and not name.startswith("memnas_")


def trainable(config: dict[str, Any], evaluator: Callable[..., Any]) -> None:
    """Tune's function trainable: one memnas trial, curve points forwarded as they come."""
    spec: TrialSpec = config[KEY]
    fields = {f.name: getattr(spec.ctx, f.name) for f in dataclasses.fields(Context)}
    ctx = _TuneContext(**{**fields, "curve": []})
    outcome = run_trial(evaluator, spec.candidate, ctx)
    final = {k: v for k, v in outcome.values.items() if is_shown(k)}
    report = {**final, DONE: 1,
              OUTCOME: json.dumps(outcome.to_json(), default=lambda v: repr(v)[:1000])}
    if outcome.artifact is not None:   # arrays cross Tune's JSON results as .npz bytes
        report[ARTIFACT] = base64.b64encode(artifacts.encode(outcome.artifact)).decode()
    tune.report(report)


def outcome_of(result: dict[str, Any]) -> Outcome:
    """The `Outcome` a trainable's final report carries."""
    artifact = result.get(ARTIFACT)
    return Outcome.from_json(json.loads(result[OUTCOME]), artifact=None if artifact is None
                             else artifacts.decode(base64.b64decode(artifact)))


def curve_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The curve points a forwarded report carries (none for Tune's own results)."""
    return json.loads(result[POINTS]) if POINTS in result else []
