"""The driver loop: propose, dispatch, store, feed back — the one place a search advances."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from memnas.errors import ConfigError
from memnas.runner._records import failure
from memnas.runner._trial import run_trial
from memnas.runner.executors import Executor, make_executor
from memnas.runner.progress import Progress
from memnas.runner.state import FINISHED, HEARTBEAT_S, Pending, SearchState
from memnas.store import Store

if TYPE_CHECKING:
    from memnas.experiment import Experiment


def drive(state: SearchState, executor: Executor, max_trials: int, workers: int) -> None:
    """Runs trials on ``executor`` until the experiment holds ``max_trials`` finished ones.

    Keeps ``workers`` trials in flight. A trial whose worker dies is run again up to
    the experiment's ``max_attempts``; one over its ``timeout_s`` is cancelled and
    failed. Every ``HEARTBEAT_S`` seconds the driver and its running trials send a
    heartbeat (not on every turn of the loop: with short trials that would be a write
    per trial). Trials that end together are stored in one transaction.
    """
    queue = state.start()                       # trials a previous driver left unfinished
    in_flight: dict[Any, tuple[Pending, float]] = {}
    exhausted = False
    timeout = state.exp.timeout_s
    next_beat = time.monotonic() + HEARTBEAT_S   # new trials are stored with a heartbeat
    try:
        while True:
            while len(in_flight) < workers and \
                    state.finished + len(in_flight) + state.num_waiting < max_trials:
                if queue:
                    pending = state.requeue(queue.pop(0))
                    if pending is None:         # out of attempts: stored as failed
                        continue
                elif exhausted or (pending := state.propose()) is None:
                    exhausted = not (in_flight and state.algorithm_waiting)
                    break
                if not pending.launch:          # the equivalence cache answered it
                    continue
                handle = executor.submit(run_trial, state.exp.evaluator, pending.candidate,
                                         state.context(pending), **state.exp.resources)
                in_flight[handle] = (pending, time.monotonic())
            if not in_flight:
                break
            finished = []
            for handle in executor.wait(list(in_flight), 1,
                                        timeout=max(0.0, next_beat - time.monotonic())):
                pending, _ = in_flight.pop(handle)
                try:
                    outcome = executor.result(handle)
                except Exception as e:          # the worker process died under the trial
                    queue.append(state.lost(pending, f"worker died: {type(e).__name__}: "
                                                     f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
                    continue
                finished.append((pending, outcome))
            state.finish_many(finished)         # one transaction for all done at once
            if timeout:
                now = time.monotonic()
                for handle, (pending, started) in list(in_flight.items()):
                    if now - started > timeout:
                        executor.cancel(handle)
                        del in_flight[handle]
                        state.finish(pending, failure(f"timed out: still running after the "
                                                      f"time limit of {timeout} s"))
            if time.monotonic() >= next_beat:
                state.heartbeat(p for p, _ in in_flight.values())
                next_beat = time.monotonic() + HEARTBEAT_S
    except BaseException:
        for handle in in_flight:
            executor.cancel(handle)
        state.close("interrupted", leftover=[p for p, _ in in_flight.values()])
        raise
    state.close("completed")


def run_experiment(experiment: "Experiment", max_trials: int, workers: int = 1,
                   executor: str | Executor = "ray", ray_address: str | None = None,
                   progress: bool | Progress = False, scheduler: Any = None) -> None:
    """Runs ``experiment`` until it holds ``max_trials`` finished trials.

    The store is opened first, so a bad URL fails before anything is started. An
    experiment that exists in the store is continued: the algorithm is rebuilt by
    replaying the stored results and trials left pending or running are run again.
    ``executor="tune"`` runs the trials with Ray Tune and its ``scheduler`` ("asha"
    by default, "fifo", or a Tune scheduler object; see `memnas.runner.tune`).
    """
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be a positive integer, got {max_trials!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(executor, str) and executor not in ("ray", "local", "tune"):
        raise ConfigError(f"unknown executor {executor!r}; expected 'ray', 'local' or 'tune'")
    if scheduler is not None and executor != "tune":
        raise ConfigError(f"a scheduler ({scheduler!r:.60}) needs executor='tune', "
                          f"got executor={executor!r}")
    store = Store(experiment.store)
    owned = None
    bar = None
    try:
        experiment._check_against_store(store)
        row = store.experiment(experiment.name)
        if row is not None:
            trials = store.trials(row["id"])
            if len(trials) >= max_trials and all(t["status"] in FINISHED for t in trials):
                return                          # nothing left to run: start no executor
        state = SearchState(experiment, store)
        state.remember_run(max_trials=max_trials, workers=workers,
                           executor=executor if isinstance(executor, str) else type(executor).__name__)
        cpus = None
        if executor in ("ray", "tune") and not (ray_address or os.environ.get("RAY_ADDRESS")):
            cpus = max(os.cpu_count() or 1,
                       math.ceil(workers * experiment.resources["num_cpus"]))
        if isinstance(executor, str) and executor != "tune":
            executor = owned = make_executor(executor, address=ray_address, num_cpus=cpus,
                                             modules=experiment.user_modules())
        if progress:
            bar = state.progress = progress if isinstance(progress, Progress) else Progress(max_trials)
        if executor == "tune":
            from memnas.runner.tune import run_with_tune

            run_with_tune(state, max_trials, workers, scheduler=scheduler or "asha",
                          ray_address=ray_address, num_cpus=cpus)
        else:
            drive(state, executor, max_trials, workers)
    finally:
        if bar is not None:
            bar.close()
        if owned is not None:
            owned.shutdown()
        store.close()
