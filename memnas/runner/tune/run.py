"""run_with_tune: a memnas search run by Ray Tune, with the scheduler chosen and Tune's settings."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from typing import Any, Iterator

from ray import tune

from memnas.errors import ConfigError
from memnas.runner.state import SearchState
from memnas.runner.tune.searcher import MemnasSearcher
from memnas.runner.tune.trainable import KEY, trainable
from memnas.runner.tune.watch import Watch


def make_scheduler(scheduler: Any) -> Any:
    """A Tune scheduler from "asha", "fifo" or a ``TrialScheduler`` object.

    "asha" is `ASHAScheduler` over the number of reports, stopping a trial at a rung
    when it is not in the best quarter so far; a stopped trial is stored completed with
    the values it reported and the costs known before training (see
    `MemnasSearcher`). Schedulers that pause trials (PBT, synchronous HyperBand) are not
    supported: a Tune trial runs one memnas trial to its end or is stopped (memnas's own
    multi-fidelity algorithms continue a candidate through checkpoint artifacts instead).

    Raises:
      ConfigError: anything else, named.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if isinstance(scheduler, str):
        if scheduler == "asha":
            # Time is the number of reports; max_t so large that no trial is cut by it.
            return ASHAScheduler(time_attr="training_iteration", max_t=10**6,
                                 grace_period=1, reduction_factor=4)
        if scheduler == "fifo":
            return FIFOScheduler()
        raise ConfigError(f"unknown scheduler {scheduler!r}; expected 'asha', 'fifo' or a "
                          "ray.tune.schedulers.TrialScheduler")
    if not isinstance(scheduler, TrialScheduler):
        raise ConfigError(f"scheduler must be 'asha', 'fifo' or a ray.tune.schedulers."
                          f"TrialScheduler, got {type(scheduler).__name__}: {scheduler!r:.80}")
    return scheduler


def run_with_tune(state: SearchState, workers: int = 1, *, scheduler: Any = "asha",
                  metric: str | None = None, mode: str | None = None,
                  storage_path: str | None = None) -> None:
    """Runs the trials of ``state``'s session with Ray Tune until it has none left.

    Ray must be initialized (`memnas.runner.driver.run_experiment` starts it), and
    ``state`` inside its ``session(max_trials)``, which starts and closes the run.

    Args:
      state: the search's bookkeeping, inside its session.
      workers: trials run at the same time (Tune's ``max_concurrent_trials``).
      scheduler: "asha", "fifo", or a Tune scheduler object (see `make_scheduler`).
      metric, mode: the curve metric the scheduler compares, and "min" or "max".
        Default: the experiment's first objective and its direction. Give a name the
        evaluator passes to ``ctx.report`` (for MQAR: ``loss`` or ``accuracy``): only
        reported values reach the scheduler. Ignored for a scheduler object that has
        its own metric.
      storage_path: folder for Tune's own files (kept); None: a temporary folder,
        removed at the end.

    Raises:
      ConfigError: a bad scheduler, metric or mode, or an error of the search itself
        (such as an objective missing from a result), raised once Tune has stopped.
    """
    from ray.tune.schedulers import FIFOScheduler

    exp = state.exp
    metric = metric or next(iter(exp.objectives))
    mode = mode or exp.objectives.get(metric)
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max' for the scheduler's metric {metric!r} "
                          f"(not an objective, so give mode=), got {mode!r}")
    scheduler = make_scheduler(scheduler)
    own_metric = getattr(scheduler, "_metric", None)
    sched_metric = own_metric or metric
    keep = storage_path is not None
    storage = os.path.abspath(os.path.expanduser(storage_path)) if keep else \
        tempfile.mkdtemp(prefix="memnas-tune-")
    searcher = MemnasSearcher(state)
    watch = Watch(searcher, state)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, evaluator=exp.evaluator),
                                {"cpu": exp.resources["num_cpus"],
                                 "gpu": exp.resources["num_gpus"]}),
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler,
                metric=None if own_metric else metric, mode=None if own_metric else mode,
                num_samples=-1,                 # the searcher says when to finish
                max_concurrent_trials=workers, reuse_actors=True,
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                name=_dir_name(exp.name), storage_path=storage, verbose=0,
                stop=watch, callbacks=[watch],
                failure_config=tune.FailureConfig(max_failures=0)))
        with _tune_env(quiet_loggers=not keep):
            tuner.fit()
        if searcher.error is not None:
            raise searcher.error
    finally:
        if not keep:
            shutil.rmtree(storage, ignore_errors=True)
    if type(scheduler) is not FIFOScheduler and searcher.started \
            and sched_metric not in searcher.reported:
        warnings.warn(f"the scheduler's metric {sched_metric!r} was never reported through "
                      f"ctx.report, so no trial could be stopped early (curves reported: "
                      f"{sorted(searcher.reported) or 'none'}); name one of those: a scheduler "
                      "object with its own metric, e.g. ASHAScheduler(metric='loss', "
                      "mode='min'), or run_with_tune(metric=..., mode=...)", stacklevel=2)


def _quiet_failures(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not (msg.startswith("Trial task failed") or msg.startswith("Trials did not complete"))


def _trial_name(trial: Any) -> str:
    spec = trial.config.get(KEY)
    return f"trial{spec.number}_{trial.trial_id}" if spec is not None else trial.trial_id


def _dir_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    return f"{safe}-{int(time.time())}"


@contextlib.contextmanager
def _tune_env(quiet_loggers: bool) -> Iterator[None]:
    """Tune settings for the run, restored after it.

    Strict metric checking off: a report need not hold the scheduler's metric (curves
    may report it only every few steps). Tune's SIGINT handler off: Ctrl-C stops the
    search as in the driver loop (trials go back to pending). Tune's CSV/JSON/TB result
    logs off when its folder is thrown away. Tune's console output off, and its log of
    failed trials: the store records them.
    """
    settings = {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1", "TUNE_DISABLE_SIGINT_HANDLER": "1",
                "RAY_AIR_NEW_OUTPUT": "0"}      # with verbose=0: no tables on the console
    if quiet_loggers:
        settings["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    loggers = [logging.getLogger(n) for n in ("ray.tune.execution.tune_controller", "ray.tune.tune")]
    for lg in loggers:
        lg.addFilter(_quiet_failures)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(_quiet_failures)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
