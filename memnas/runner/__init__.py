"""Running a search: the driver loop, its bookkeeping (`SearchState`) and the executors.

`run_experiment` is the entry point (``Experiment.run`` calls it): it opens the store,
owns the run's start and close (`SearchState.session`) and Ray's lifetime, and hands
the trials to the one driver loop (`memnas.runner.driver.drive`) or to Ray Tune
(`memnas.runner.tune`, an adapter over the same `SearchState` operations).
"""

from __future__ import annotations

import importlib
from typing import Any

from memnas.runner._records import dna_from_json, reward_of, summary_of, trial_seed

__all__ = ["SearchState", "Pending", "dna_from_json", "reward_of", "run_experiment",
           "summary_of", "trial_seed"]

_LAZY = {"SearchState": "memnas.runner.state", "Pending": "memnas.runner.state",
         "run_experiment": "memnas.runner.driver"}


def __getattr__(name: str) -> Any:
    # Lazy: workers import memnas.runner for the trial function without the store.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
