"""Tune's callback and stopper for a memnas run: heartbeats, worker deaths, time limits."""

from __future__ import annotations

import os
import time
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from memnas.runner.contract import HEARTBEAT_S
from memnas.runner.state import SearchState
from memnas.runner.tune.searcher import MemnasSearcher


class Watch(Callback, Stopper):
    """Heartbeats for the store, worker deaths with their reasons, the trials' time limit
    (``state.over_time``), and a stop of the whole run when the searcher has failed."""

    def __init__(self, searcher: MemnasSearcher, state: SearchState) -> None:
        self.searcher = searcher
        self.state = state
        self.every_s = HEARTBEAT_S
        self._beat = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._beat >= self.every_s:
            self._beat = now
            self.searcher.heartbeat()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.trial_died(trial.trial_id, f"worker died: {error_of(trial)}")

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.state.over_time(result.get("time_total_s"))

    def stop_all(self) -> bool:
        return self.searcher.error is not None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config: leave the store and algorithm behind.
        return {**self.__dict__, "state": None}


def error_of(trial: Any) -> str:
    """The first line of the error Tune recorded for a trial (its worker died)."""
    try:
        path = trial.pickled_error_file      # written locally, synced to storage later
        if path and os.path.exists(path):
            import ray.cloudpickle as cloudpickle

            with open(path, "rb") as f:
                err = cloudpickle.load(f)
            lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
            return f"{type(err).__name__}: {lines[0] if lines else ''}".strip()
    except Exception:  # the reason is a nicety
        pass
    return "the Tune trial failed"
