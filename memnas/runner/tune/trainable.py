"""The worker side of a Tune run: one memnas trial as a Tune function trainable.

Reports cross Tune as flat results: the curve points of each ``ctx.report`` (shown to
the scheduler under their names), with the first of them the costs known before training
(the evaluator's ``costs(candidate)`` hook, so that a trial the scheduler stops can be
stored with them), and, at the end, the trial's `Outcome` as JSON with its artifact as
base64 ``.npz``. Nothing here touches the store.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from typing import Any, Callable

from ray import tune

from memnas.measurement import Context, costs_before_training
from memnas.records import Outcome
from memnas.runner._trial import node_name, run_trial
from memnas.store import artifacts

log = logging.getLogger(__name__)

KEY = "memnas"                   # the trial's entry in Tune's config
STEP = "memnas_step"             # the evaluator's step of a forwarded report
POINTS = "memnas_points"         # the report's curve points, as JSON
DONE = "memnas_done"             # marks the final report of a trial that ran to its end
OUTCOME = "memnas_outcome"       # the trial's `Outcome`, as JSON
ARTIFACT = "memnas_artifact"     # its artifact, as base64 .npz bytes
NODE = "memnas_node"             # where the trial runs (`node_name()`)
COSTS = "memnas_costs"           # costs known before training, as JSON (first report only)
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
    """A `Context` whose ``report`` also sends each report to Tune's scheduler, the first
    one with ``known_costs`` (costs known before training) under `COSTS`."""

    known_costs: dict[str, float] | None = None

    def report(self, step: int, **metrics: float) -> None:
        start = len(self.curve)
        super().report(step, **metrics)
        points = self.curve[start:]
        result = {**{p["name"]: p["value"] for p in points if is_shown(p["name"])},
                  STEP: int(step), POINTS: json.dumps(points), NODE: _node()}
        if self.known_costs:
            result[COSTS], self.known_costs = json.dumps(self.known_costs), None
        tune.report(result)


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
    try:  # before the evaluation's clock starts
        ctx.known_costs = costs_before_training(evaluator, spec.candidate)
    except Exception as e:  # the evaluation says what is wrong with the candidate, if anything
        log.warning("trial %s: the evaluator's costs(candidate) hook raised %s: %s; if the "
                    "scheduler stops it, it is stored without them", spec.number,
                    type(e).__name__, e)
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


def known_costs_of(result: dict[str, Any]) -> dict[str, float] | None:
    """The costs known before training a forwarded report carries (the first one), or None."""
    return {k: float(v) for k, v in json.loads(result[COSTS]).items()} if COSTS in result \
        else None


def curve_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The curve points a forwarded report carries (none for Tune's own results)."""
    return json.loads(result[POINTS]) if POINTS in result else []
