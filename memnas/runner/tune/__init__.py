"""Ray Tune as an executor: memnas algorithms behind a Tune `Searcher`, Tune's schedulers on top.

An adapter over the same `SearchState` operations the driver loop uses (as Syne Tune's
one `Tuner` loop drives a narrow scheduler): Tune asks the searcher for a trial
(``state.next_trial``), runs it in `trainable` with curve points forwarded to its
scheduler (ASHA by default), and hands it back (``state.finish`` / ``state.lost``).
The store stays the source of truth: results, the dashboard and ``memnas resume`` work
alike whichever way a search ran. Resuming goes through the store, not ``Tuner.restore``.

Modules: `trainable` (the worker side; no store), `searcher` (`MemnasSearcher`),
`watch` (heartbeats, worker deaths, time limits), `run` (`run_with_tune`: scheduler
choice, Tune's settings).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MemnasSearcher", "run_with_tune", "STOPPED_EARLY"]


def __getattr__(name: str) -> Any:
    # Lazy: Tune's workers import `memnas.runner.tune.trainable` without the driver side.
    if name == "MemnasSearcher":
        from memnas.runner.tune.searcher import MemnasSearcher

        return MemnasSearcher
    if name == "run_with_tune":
        from memnas.runner.tune.run import run_with_tune

        return run_with_tune
    if name == "STOPPED_EARLY":
        from memnas.runner.tune.trainable import STOPPED_EARLY

        return STOPPED_EARLY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
