"""The driver loop: propose, dispatch, store, feed back — the one place a search advances."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Sequence

from memnas.algorithms.base import hooks_of
from memnas.errors import ConfigError, StoreFull, StoreUnavailable
from memnas.records import FINISHED, Outcome
from memnas.runner._trial import run_trials
from memnas.runner.executors import Executor, make_executor, start_ray, stop_ray
from memnas.runner.progress import Progress
from memnas.runner.contract import (HEARTBEAT_S, Pending, RunnableExperiment,
                                    check_against_store)
from memnas.runner.claim import end_failed_run
from memnas.runner.state import SearchState
from memnas.store import Store
from memnas.store.patience import DEFAULT_PATIENCE_S


BACKSTOP_GRACE_S = 10.0
"""Seconds past a trial's time limit, counted from its submission, after which the
driver cancels its task: enough for a cold worker's start-up (imports of the user's
modules included), which the worker's own clock leaves out."""


class BatchSizer:
    """How many trials one executor task runs: 1, a fixed number, or sized from trial times.

    A task costs the driver about 1 ms (Ray's submit, wait and get) however short its
    trial; for trials of a few milliseconds (tabular benchmarks, surrogates, the no-op
    trials of `memnas bench overhead`) that is most of the run. ``"auto"`` runs one trial
    per task until trials have been timed, then as many as fill about
    ``TARGET_TASK_S`` of evaluation (at most ``MAX_BATCH``); trials over 10 ms (half
    of it) go one per task. Batches are never larger than an even share of the trials
    left, so the last ones still spread over the workers. With a batch of k, an
    algorithm has up to ``workers * k`` proposals in flight before it hears back.

    Args:
      batch: 1 (one trial per task; the default), an integer k, or "auto".
      timeout_s: the experiment's time limit per trial; batching is off with one (a
        batch's running time cannot be charged to one of its trials).
    """

    TARGET_TASK_S = 0.02
    MAX_BATCH = 32

    def __init__(self, batch: int | str = 1, timeout_s: float | None = None) -> None:
        if batch != "auto" and (not isinstance(batch, int) or isinstance(batch, bool)
                                or batch < 1):
            raise ConfigError(f"batch must be a positive integer or 'auto', got {batch!r}")
        self.batch = 1 if timeout_s else batch
        self._mean: float | None = None          # running mean of a trial's wall time

    def observe(self, outcomes: Sequence[Outcome]) -> None:
        """Takes the wall times of finished trials into account."""
        for o in outcomes:
            w = o.wall_time
            if w is not None:
                self._mean = w if self._mean is None else 0.8 * self._mean + 0.2 * w

    def size(self, left: int, free_slots: int) -> int:
        """Trials for the next task, given ``left`` trials still wanted and free slots."""
        if self.batch == "auto":
            k = 1 if self._mean is None else \
                max(1, min(self.MAX_BATCH, int(self.TARGET_TASK_S / max(self._mean, 1e-5))))
        else:
            k = self.batch
        return max(1, min(k, math.ceil(left / max(1, free_slots))))


def drive(state: SearchState, executor: Executor, workers: int,
          batch: int | str = 1) -> None:
    """Runs trials on ``executor`` until ``state`` has none left to launch or in flight.

    The one driver loop: keeps ``workers`` tasks in flight, each running one trial or,
    with ``batch``, a batch of short ones (see `BatchSizer`); which trial comes next,
    retries of trials whose worker died (``state.lost``), time limits
    (``state.expire``) and storing are `SearchState`'s. A trial's time limit is
    enforced by its worker from the evaluator's start (`run_trials`); the driver cancels
    a task still running ``BACKSTOP_GRACE_S`` past the limit since it was submitted (an
    evaluator stuck in C code or a thread), waking up for it. Every ``HEARTBEAT_S`` seconds
    the driver and its trials send a heartbeat (not on every turn of the loop: with
    short trials that would be a write per trial). Trials that end together are stored
    in one transaction. On any error, tasks in flight are cancelled (the state's
    session puts their trials back to pending).
    """
    sizer = BatchSizer(batch, state.exp.timeout_s)
    tasks: dict[Any, list[Pending]] = {}
    evaluator, resources = state.exp.evaluator, state.exp.resources
    limit = state.exp.timeout_s
    next_beat = time.monotonic() + HEARTBEAT_S   # new trials are stored with a heartbeat
    try:
        while True:
            while len(tasks) < workers:
                group = state.next_trials(sizer.size(state.trials_left, workers - len(tasks)))
                if not group:
                    break
                handle = executor.submit(run_trials, evaluator,
                                         [(p.candidate, state.context(p)) for p in group],
                                         limit, **resources)
                tasks[handle] = group
            if not tasks:
                break
            finished = []
            wake = next_beat
            if limit:                           # the backstop's next deadline, if sooner
                wake = min(wake, min(p.started for g in tasks.values() for p in g)
                           + limit + BACKSTOP_GRACE_S + 0.05)
            for handle in executor.wait(list(tasks), 1,
                                        timeout=max(0.0, wake - time.monotonic())):
                group = tasks.pop(handle)
                try:
                    outcomes = executor.result(handle)
                except Exception as e:          # the worker process died under the trials
                    why = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    for p in group:
                        state.lost(p, f"worker died: {type(e).__name__}: {why}")
                    continue
                sizer.observe(outcomes)
                finished.extend(zip(group, outcomes))
            state.finish_many(finished)         # one transaction for all done at once
            for late in state.expire(BACKSTOP_GRACE_S):  # batches are off with a limit
                handle = next(h for h, g in tasks.items() if late in g)
                executor.cancel(handle)
                del tasks[handle]
            if time.monotonic() >= next_beat:
                state.heartbeat()
                next_beat = time.monotonic() + HEARTBEAT_S
    except BaseException:
        for handle in tasks:
            executor.cancel(handle)
        raise


def run_experiment(experiment: RunnableExperiment, max_trials: int, workers: int = 1,
                   executor: str | Executor = "ray", ray_address: str | None = None,
                   progress: bool | Progress = False, scheduler: Any = None,
                   batch: int | str = 1, max_cost: float | None = None,
                   store_patience_s: float = DEFAULT_PATIENCE_S) -> None:
    """Runs ``experiment`` until it holds ``max_trials`` finished trials, or until its
    trials have spent ``max_cost`` budget units (a multi-fidelity algorithm's).

    The one place a run starts and ends: the store is opened first (a bad URL fails
    before anything is started), Ray is started here when the run needs it and shut
    down at the end, and the run's `SearchState.session` rebuilds the algorithm from
    the stored trials and closes the run. An experiment that exists in the store is
    continued; one driver runs it at a time (`memnas.runner.claim.claim`: another is
    refused in one line), and a run that fails leaves no unusable experiment behind
    (`memnas.runner.claim.end_failed_run`). ``executor="tune"`` runs the trials with Ray
    Tune and its ``scheduler`` ("asha" by default, "fifo", or a Tune scheduler object; see
    `memnas.runner.tune`).
    ``batch`` sets how many trials one task runs (see `BatchSizer`).

    While the store is unreachable (a PostgreSQL restart, a dropped connection, SQLite
    locked past its busy timeout) the driver waits for it, up to ``store_patience_s``
    seconds per outage, while its running trials go on (`memnas.store.patience`); past
    that, or when the store's disk is full, the run stops with one line
    (`StoreUnavailable`, `StoreFull`) and ``memnas resume`` continues it.
    """
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be a positive integer, got {max_trials!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(executor, str) and executor not in ("ray", "local", "tune"):
        raise ConfigError(f"unknown executor {executor!r}; expected 'ray', 'local' or 'tune'")
    BatchSizer(batch)                           # a bad batch fails before anything starts
    if max_cost is not None:
        if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) \
                or not math.isfinite(max_cost) or max_cost <= 0:
            raise ConfigError(f"max_cost must be a positive number of budget units, "
                              f"got {max_cost!r}")
        if hooks_of(experiment.make_algorithm()).budget_unit is None:
            raise ConfigError(f"max_cost={max_cost!r} needs a multi-fidelity algorithm "
                              f"(asha, hyperband, mo_asha), whose trials spend budget units")
    if isinstance(store_patience_s, bool) or not isinstance(store_patience_s, (int, float)) \
            or not store_patience_s >= 0:
        raise ConfigError(f"store_patience_s must be a number of seconds >= 0, "
                          f"got {store_patience_s!r}")
    if batch != 1 and executor == "tune":
        raise ConfigError(f"batch={batch!r} needs executor='ray' or 'local'; Ray Tune runs "
                          f"one trial per Tune trial")
    if scheduler is not None and executor != "tune":
        raise ConfigError(f"a scheduler ({scheduler!r:.60}) needs executor='tune', "
                          f"got executor={executor!r}")
    store = Store(experiment.store)
    store.patience_s = float(store_patience_s)
    owned: Executor | None = None
    ray_started = False
    bar = None
    try:
        check_against_store(experiment, store)
        row = store.experiment(experiment.name)
        if row is not None:
            trials = store.trials(row["id"])
            spent = sum(float((t["costs"] or {}).get("budget_spent", 0.0)) for t in trials)
            if (len(trials) >= max_trials or (max_cost is not None and spent >= max_cost)) \
                    and all(t["status"] in FINISHED for t in trials):
                return                          # nothing left to run: start no executor
        state = SearchState(experiment, store)  # claims it, or ConfigError: another runs it
        try:
            shown = executor if isinstance(executor, str) else type(executor).__name__
            state.remember_run(max_trials=max_trials, workers=workers, batch=batch,
                               executor=shown, max_cost=max_cost,
                               store_patience_s=store.patience_s)  # only once claimed: a refused run writes nothing
            cpus = None
            if executor in ("ray", "tune") and not (ray_address or os.environ.get("RAY_ADDRESS")):
                cpus = max(os.cpu_count() or 1,
                           math.ceil(workers * experiment.resources["num_cpus"]))
            if executor == "tune":
                ray_started = start_ray(ray_address, cpus, experiment.user_modules())
            elif isinstance(executor, str):
                executor = owned = make_executor(executor, address=ray_address, num_cpus=cpus,
                                                 modules=experiment.user_modules())
            if progress:
                bar = state.tally.progress = progress if isinstance(progress, Progress) \
                    else Progress(max_trials)
            with state.session(max_trials, max_cost):
                if executor == "tune":
                    from memnas.runner.tune import run_with_tune

                    run_with_tune(state, workers, scheduler=scheduler or "asha")
                else:
                    drive(state, executor, workers, batch=batch)
        except (StoreUnavailable, StoreFull) as e:  # nothing more can be written now
            raise type(e)(f"{e}; the run stopped with every finished trial it stored kept: "
                          f"`memnas resume {experiment.name}` continues it"
                          + (" once the store is back" if isinstance(e, StoreUnavailable)
                             else " once there is free space")) from None
        except BaseException as e:  # left unusable (nothing finished): deleted
            end_failed_run(store, state.exp_id, state.driver, e)
            raise
    finally:
        if bar is not None:
            bar.close()
        if owned is not None:
            owned.shutdown()
        if ray_started:
            stop_ray()
        store.close()
