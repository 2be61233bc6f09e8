"""MemnasSearcher: a memnas search seen by Ray Tune, an adapter over `SearchState`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from ray.tune.search import Searcher

from memnas.errors import ConfigError
from memnas.records import Outcome, TrialStatus
from memnas.runner.contract import Pending
from memnas.runner.state import SearchState
from memnas.runner.tune.trainable import (DONE, KEY, NODE, STOPPED_EARLY, TrialSpec,
                                          curve_points, known_costs_of, outcome_of)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Live:
    """A trial Tune is running: its pending row and what it has reported so far."""

    pending: Pending
    points: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seen: int = 0                # last training_iteration passed to on_trial_result
    costs: dict[str, float] = dataclasses.field(default_factory=dict)  # known before training
    start: int = 0               # the step its checkpoint (ctx.resume) was at; 0: from scratch

    def add(self, result: dict[str, Any]) -> set[str]:
        """Keeps a forwarded report's curve points (and costs); returns the points' names."""
        costs = known_costs_of(result)
        if costs is not None:
            self.costs = costs
        points = curve_points(result)
        self.points.extend(points)
        return {p["name"] for p in points}


class MemnasSearcher(Searcher):
    """Tune's side of a memnas search: trials come from, and go back to, a `SearchState`.

    ``suggest`` takes ``state.next_trial()`` (a trial left unfinished first, then a
    proposal; the equivalence cache answers some without reaching Tune) and hands Tune
    its candidate and `Context`; ``on_trial_complete`` stores the outcome
    (``state.finish``), a trial whose worker died goes back through ``state.lost``.
    When and how many trials run is the state's; this class only translates Tune's
    hooks. Errors raised in a hook are kept (Tune would swallow them), stop the run,
    and are raised once Tune has stopped.

    A trial the scheduler stops is stored completed, marked `STOPPED_EARLY`, with the
    last value of each curve metric it reported over the costs its first report
    carried (the evaluator's ``costs(candidate)`` hook: params, state size, FLOPs) and
    ``budget_spent``, the steps it trained; failed when an objective is in neither.

    Args:
      state: the search's bookkeeping, inside its ``session``.

    A searcher is used by one Tune run in this process. Pickled (Tune writes its
    config to disk), it keeps none of its live state, so ``Tuner.restore`` cannot
    continue a memnas search: run the experiment again instead.
    """

    def __init__(self, state: SearchState) -> None:
        super().__init__()
        self._state: SearchState | None = state
        self._live: dict[str, _Live] = {}
        self._died: dict[str, Pending] = {}       # errored in Tune, reason not yet known
        self.error: BaseException | None = None   # first error raised in a hook
        self.reported: set[str] = set()           # names of curve points forwarded to Tune
        self.started = 0                          # trials handed to Tune
        self.stopped = 0                          # trials stopped early by the scheduler

    # -- Tune's hooks ------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self._metric, self._mode = metric, mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        state = self._live_state()
        if self.error is not None:
            return Searcher.FINISHED
        try:
            for dead in list(self._died):      # errors whose callback never came
                self.trial_died(dead, "worker died: the Tune trial failed")
            pending = state.next_trial()
            if pending is None:
                return None if self.running else Searcher.FINISHED
            ctx = state.context(pending)
        except Exception as e:  # Tune would swallow it: keep it, stop, raise it after
            self._fail(e)
            return Searcher.FINISHED
        self._live[trial_id] = _Live(pending, start=resumed_step(ctx.resume))
        self.started += 1
        return {KEY: TrialSpec(pending.trial["number"], pending.candidate, ctx)}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self._live.get(trial_id)
        if live is not None:
            self.reported |= live.add(result)
            live.seen = result.get("training_iteration", live.seen)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        state = self._live_state()
        live = self._live.pop(trial_id, None)
        if live is None:
            return
        if error:
            self._died[trial_id] = live.pending  # reason comes with on_trial_error
            return
        result = result or {}
        if self.error is not None:
            return                               # left in flight: pending again at close
        try:
            if result.get(DONE):
                state.finish(live.pending, outcome_of(result))
            elif result.get("training_iteration", 0) > live.seen:
                # Stopped on a result the scheduler (or the time limit) saw just now.
                self.reported |= live.add(result)
                self.stopped += 1
                state.finish(live.pending, self._stopped_outcome(live, result))
            # else stopped from outside (the run is ending): left in flight, so the
            # session puts it back to pending for the next run.
        except Exception as e:
            self._fail(e)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the store holds the search (see the class docstring)."""

    def restore(self, checkpoint_path: str) -> None:
        raise ConfigError("a memnas search is resumed from its store, not with Tuner.restore: "
                          "run the experiment again (or `memnas resume`)")

    # -- called by the callback --------------------------------------------------------
    def trial_died(self, trial_id: str, reason: str) -> None:
        """Records that the trial's worker died; it is run again while it has attempts."""
        pending = self._died.pop(trial_id, None)
        if pending is None or self.error is not None:
            return
        try:
            self._live_state().lost(pending, reason)
        except Exception as e:
            self._fail(e)

    def heartbeat(self) -> None:
        """Marks the driver and its trials alive (called by `memnas.runner.tune.watch`)."""
        try:
            self._live_state().heartbeat()
        except Exception as e:
            self._fail(e)

    @property
    def running(self) -> bool:
        """Whether any trial is still in Tune's hands."""
        return bool(self._live or self._died)

    # -- insides -----------------------------------------------------------------------
    def _stopped_outcome(self, live: _Live, result: dict[str, Any]) -> Outcome:
        """A trial the scheduler stopped: completed with the last value of each reported
        curve metric over the costs known before training (the evaluator's ``costs``
        hook), ``budget_spent`` the steps trained (the last step reported, less the
        checkpoint's it resumed), and `STOPPED_EARLY`; failed when an objective is in
        neither."""
        state = self._live_state()
        values: dict[str, float] = {}
        for p in live.points:                   # in report order: the last value wins
            values[p["name"]] = p["value"]
        costs = {k: v for k, v in live.costs.items() if k not in values}
        wall = result.get("time_total_s")
        node = result.get(NODE) or result.get("hostname")
        steps = max((p["step"] for p in live.points), default=None)
        if state.over_time(wall):
            return state.timed_out(wall, node=node, curve=live.points, wall_time=wall)
        missing = [k for k in state.exp.objectives if k not in values and k not in costs]
        if missing:
            return Outcome.failed(
                f"stopped early by the scheduler (after step {steps}, "
                f"{result.get('training_iteration')} reports) before it reported objective(s) "
                f"{missing}; it reported {sorted(values) or 'nothing'}"
                f"{f' and costs {sorted(costs)}' if costs else ''}. Report the objectives "
                f"through ctx.report(...), or give the evaluator a costs(candidate) hook for "
                f"costs known before training, for stopped trials to count", node=node,
                metrics=values, costs=costs, curve=live.points, wall_time=wall)
        if steps is not None:
            costs["budget_spent"] = float(max(0, steps - live.start))
        return Outcome(TrialStatus.COMPLETED, metrics={**values, STOPPED_EARLY: 1.0},
                       costs=costs, curve=live.points, wall_time=wall, node=node)

    def _fail(self, e: BaseException) -> None:
        log.debug("memnas searcher failed", exc_info=e)
        if self.error is None:
            self.error = e

    def _live_state(self) -> SearchState:
        if self._state is None:
            raise ConfigError("this MemnasSearcher was unpickled: it has no search to run; "
                              "a memnas search is resumed from its store, not with Tuner.restore")
        return self._state

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its config (tuner.pkl): leave the store and algorithm behind.
        return {**self.__dict__, "_state": None, "_live": {}, "_died": {}, "error": None}


def resumed_step(resume: Any) -> int:
    """The step a trial resuming ``resume`` (``ctx.resume``) starts from: the checkpoint's
    ``step`` (memnas's trainers) or ``steps`` (the tabular benchmark), looked for in nested
    checkpoints too (a sweep's runs, a multi-task evaluator's tasks); 0 when none."""
    if not isinstance(resume, Mapping):
        return 0
    for key in ("step", "steps"):
        value = resume.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    for value in resume.values():
        found = resumed_step(value) if isinstance(value, Mapping) else 0
        if found:
            return found
    return 0
