"""Ray Tune as an executor: memnas algorithms behind a Tune `Searcher`, Tune's schedulers on top.

Tune runs the trials and its scheduler (ASHA by default) stops bad ones early from the
curves evaluators report through ``ctx.report``; memnas's store stays the source of
truth. Every trial Tune runs is a row proposed, started and finished through
`SearchState`, as in the driver loop, so results, the dashboard and ``memnas resume``
work alike whichever way a search ran.

A trial the scheduler stops is stored as *completed* with the last value of each metric
it reported and ``stopped_early = 1.0`` among its metrics, and the algorithm is fed
that. If it had not yet reported every objective, it is stored as *failed* (there is no
reward to feed back) with an error that says so. A trial past the experiment's
``timeout_s`` is stopped at its next report and failed, as in the driver loop.

Resuming goes through the store (run the experiment again), not ``Tuner.restore``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ray import tune
from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from memnas.errors import ConfigError
from memnas.measurement import Context
from memnas.runner._records import failure
from memnas.runner._trial import node_name, run_trial
from memnas.store import _artifacts

if TYPE_CHECKING:  # workers import this module for the trainable: keep the store out
    from memnas.runner.state import Pending, SearchState

__all__ = ["MemnasSearcher", "run_with_tune"]

log = logging.getLogger(__name__)

_KEY = "memnas"                  # the trial's entry in Tune's config
_STEP = "memnas_step"            # the evaluator's step of a forwarded report
_POINTS = "memnas_points"        # the report's curve points, as JSON
_DONE = "memnas_done"            # marks the final report of a trial that ran to its end
_OUTCOME = "memnas_outcome"      # the trial's outcome (as `run_trial` returns it), as JSON
_NODE = "memnas_node"            # where the trial runs (`node_name()`)
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


# -- the worker side --------------------------------------------------------------------
class _TrialSpec:
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
        tune.report({**{p["name"]: p["value"] for p in points if _is_shown(p["name"])},
                     _STEP: int(step), _POINTS: json.dumps(points), _NODE: _node()})


_NODE_NAME: list[str] = []


def _node() -> str:
    if not _NODE_NAME:
        _NODE_NAME.append(node_name())
    return _NODE_NAME[0]


def _is_shown(name: str) -> bool:
    return name not in _TUNE_KEYS and not name.startswith("memnas_")


def _trainable(config: dict[str, Any], evaluator: Callable[..., Any]) -> None:
    """Tune's function trainable: one memnas trial, curve points forwarded as they come."""
    spec: _TrialSpec = config[_KEY]
    fields = {f.name: getattr(spec.ctx, f.name) for f in dataclasses.fields(Context)}
    ctx = _TuneContext(**{**fields, "curve": []})
    outcome = run_trial(evaluator, spec.candidate, ctx)
    if outcome.get("artifact") is not None:  # arrays cross Tune's JSON results as .npz bytes
        outcome["artifact"] = base64.b64encode(_artifacts.encode(outcome["artifact"])).decode()
    final = {k: v for k, v in {**outcome["costs"], **outcome["metrics"]}.items() if _is_shown(k)}
    tune.report({**final, _DONE: 1,
                 _OUTCOME: json.dumps(outcome, default=lambda v: repr(v)[:1000])})


# -- the driver side --------------------------------------------------------------------
def _outcome_of(result: dict[str, Any]) -> dict[str, Any]:
    outcome = json.loads(result[_OUTCOME])
    if outcome.get("artifact") is not None:
        outcome["artifact"] = _artifacts.decode(base64.b64decode(outcome["artifact"]))
    return outcome


@dataclasses.dataclass
class _Live:
    """A trial Tune is running: its pending row and what it has reported so far."""

    pending: Pending
    points: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seen: int = 0                # last training_iteration passed to on_trial_result

    def add(self, result: dict[str, Any]) -> set[str]:
        """Keeps a forwarded report's curve points; returns their names."""
        if _POINTS not in result:
            return set()
        points = json.loads(result[_POINTS])
        self.points.extend(points)
        return {p["name"] for p in points}


class MemnasSearcher(Searcher):
    """A memnas search seen by Ray Tune: trials come from, and go back to, a `SearchState`.

    ``suggest`` proposes a trial (a stored row, marked running) and hands Tune its
    candidate and `Context`; ``on_trial_complete`` stores the outcome and feeds the
    algorithm back. Trials left unfinished by a previous run are run first; proposals
    the equivalence cache answers are stored without reaching Tune. Suggestions stop
    once ``max_trials`` trials are finished, in flight or waiting for a running twin, or
    the algorithm is exhausted; a trial whose worker died goes back to the queue while it has attempts
    left (``experiment.max_attempts``), as in the driver loop.

    Args:
      state: the search's bookkeeping; ``state.start()`` has been called.
      max_trials: finished trials the experiment should hold at the end.
      requeue: stored trials to run again (what ``state.start()`` returned).
      timeout_s: a trial still running after this many seconds is failed (checked at
        its reports); None: the experiment's ``timeout_s``.

    A searcher is used by one Tune run in this process. Pickled (Tune writes its
    config to disk), it keeps none of its live state, so ``Tuner.restore`` cannot
    continue a memnas search: run the experiment again instead.
    """

    def __init__(self, state: SearchState, max_trials: int,
                 requeue: list[dict[str, Any]] | tuple = ()) -> None:
        super().__init__()
        self._state: SearchState | None = state
        self.max_trials = max_trials
        self._queue = list(requeue)
        self._live: dict[str, _Live] = {}
        self._died: dict[str, Pending] = {}       # errored in Tune, reason not yet known
        self._leftover: list[Pending] = []        # stopped from outside: back to pending
        self._exhausted = False
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
            self._bury_dead()
            pending = self._next()
            if pending is None:
                return None if (self._live or self._died) else Searcher.FINISHED
            ctx = state.context(pending)
        except Exception as e:  # Tune would swallow it: keep it, stop, raise it after
            self._fail(e)
            return Searcher.FINISHED
        self._live[trial_id] = _Live(pending)
        self.started += 1
        return {_KEY: _TrialSpec(pending.trial["number"], pending.candidate, ctx)}

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
            self._leftover.append(live.pending)
            return
        try:
            if result.get(_DONE):
                state.finish(live.pending, _outcome_of(result))
            elif result.get("training_iteration", 0) > live.seen:
                # Stopped on a result the scheduler (or the time limit) saw just now.
                self.reported |= live.add(result)
                self.stopped += 1
                state.finish(live.pending, self._stopped_outcome(live, result))
            else:  # stopped from outside (the run is ending): run it again next time
                self._leftover.append(live.pending)
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
            if pending is not None:
                self._leftover.append(pending)
            return
        try:
            self._queue.append(self._live_state().lost(pending, reason))
        except Exception as e:
            self._fail(e)

    def heartbeat(self) -> None:
        try:
            self._live_state().heartbeat(live.pending for live in self._live.values())
        except Exception as e:
            self._fail(e)

    def unfinished(self) -> list[Pending]:
        """Trials started but not finished: they go back to pending when the run ends."""
        return ([live.pending for live in self._live.values()] + list(self._died.values())
                + self._leftover)

    # -- insides -----------------------------------------------------------------------
    def _next(self) -> Pending | None:
        """The next trial to run, as the driver loop picks it; None: none for now."""
        state = self._live_state()
        while (state.finished + len(self._live) + len(self._died) + state.num_waiting
               < self.max_trials):
            if self._queue:
                pending = state.requeue(self._queue.pop(0))
                if pending is None:             # out of attempts: stored as failed
                    continue
                return pending
            if self._exhausted:
                return None
            pending = state.propose()
            if pending is None:
                self._exhausted = not (self._live and state.algorithm_waiting)
                return None
            if pending.launch:
                return pending
            # else the equivalence cache answered it (or attached it to a running twin)
        return None

    def _bury_dead(self) -> None:
        for trial_id in list(self._died):      # errors whose callback never came
            self.trial_died(trial_id, "worker died: the Tune trial failed")

    def _stopped_outcome(self, live: _Live, result: dict[str, Any]) -> dict[str, Any]:
        exp = self._live_state().exp
        values: dict[str, float] = {}
        for p in live.points:                   # in report order: the last value wins
            values[p["name"]] = p["value"]
        wall = result.get("time_total_s")
        node = result.get(_NODE) or result.get("hostname")
        steps = max((p["step"] for p in live.points), default=None)
        if exp.timeout_s and wall is not None and wall > exp.timeout_s:
            return {**failure(f"timed out: still running after the time limit of "
                              f"{exp.timeout_s} s", node=node),
                    "curve": live.points, "wall_time": wall}
        missing = [k for k in exp.objectives if k not in values]
        if missing:
            return {**failure(
                f"stopped early by the scheduler (after step {steps}, "
                f"{result.get('training_iteration')} reports) before it reported objective(s) "
                f"{missing}; it reported {sorted(values) or 'nothing'}. Report the objectives "
                f"through ctx.report(...) for stopped trials to count", node=node),
                "metrics": values, "curve": live.points, "wall_time": wall}
        return {"status": "completed", "metrics": {**values, STOPPED_EARLY: 1.0}, "costs": {},
                "curve": live.points, "wall_time": wall, "node": node, "error": None}

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
        return {**self.__dict__, "_state": None, "_live": {}, "_died": {}, "_leftover": [],
                "_queue": [], "error": None}


class _Watch(Callback, Stopper):
    """Heartbeats for the store, worker deaths with their reasons, time limits, and a stop
    of the whole run when the searcher has failed."""

    def __init__(self, searcher: MemnasSearcher, timeout_s: float | None) -> None:
        from memnas.runner.state import HEARTBEAT_S

        self.searcher = searcher
        self.timeout_s = timeout_s
        self.every_s = HEARTBEAT_S
        self._beat = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._beat >= self.every_s:
            self._beat = now
            self.searcher.heartbeat()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.trial_died(trial.trial_id, f"worker died: {_error_of(trial)}")

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self.timeout_s) and result.get("time_total_s", 0) > self.timeout_s

    def stop_all(self) -> bool:
        return self.searcher.error is not None


# -- the entry point -----------------------------------------------------------------------
def run_with_tune(state: SearchState, max_trials: int, workers: int = 1, *,
                  scheduler: Any = "asha", metric: str | None = None, mode: str | None = None,
                  storage_path: str | None = None, ray_address: str | None = None,
                  num_cpus: float | None = None) -> None:
    """Runs a search with Ray Tune until the experiment holds ``max_trials`` finished trials.

    Args:
      state: the search's bookkeeping (not started yet: this calls ``state.start()``).
      max_trials: finished trials wanted (an existing experiment is continued).
      workers: trials run at the same time (Tune's ``max_concurrent_trials``).
      scheduler: "asha" (`ASHAScheduler` over the number of reports, stopping a trial at
        a rung when it is not in the best quarter so far), "fifo" (no early stopping),
        or a Tune scheduler object. One that pauses trials (PBT, synchronous
        HyperBand) is not supported: memnas trials keep no checkpoints.
      metric, mode: the curve metric the scheduler compares, and "min" or "max".
        Default: the experiment's first objective and its direction. Give a name the
        evaluator passes to ``ctx.report`` (for MQAR: ``loss`` or ``accuracy``): only
        reported values reach the scheduler. Ignored for a scheduler object that has
        its own metric.
      storage_path: folder for Tune's own files (kept); None: a temporary folder,
        removed at the end.
      ray_address, num_cpus: how to start Ray if it is not initialized (as the Ray
        executor does: a local instance of ``num_cpus`` CPUs, or the cluster at
        ``ray_address``); Ray started here is shut down at the end.

    Raises:
      ConfigError: a bad scheduler, metric or mode, or an error of the search itself
        (such as an objective missing from a result), raised once Tune has stopped.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    from memnas.runner.executors import RayExecutor

    exp = state.exp
    metric = metric or next(iter(exp.objectives))
    mode = mode or exp.objectives.get(metric)
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max' for the scheduler's metric {metric!r} "
                          f"(not an objective, so give mode=), got {mode!r}")
    if isinstance(scheduler, str):
        if scheduler == "asha":
            # Time is the number of reports; max_t so large that no trial is cut by it.
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=10**6,
                                      grace_period=1, reduction_factor=4)
        elif scheduler == "fifo":
            scheduler = FIFOScheduler()
        else:
            raise ConfigError(f"unknown scheduler {scheduler!r}; expected 'asha', 'fifo' or a "
                              "ray.tune.schedulers.TrialScheduler")
    elif not isinstance(scheduler, TrialScheduler):
        raise ConfigError(f"scheduler must be 'asha', 'fifo' or a ray.tune.schedulers."
                          f"TrialScheduler, got {type(scheduler).__name__}: {scheduler!r:.80}")
    own_metric = getattr(scheduler, "_metric", None)
    sched_metric = own_metric or metric

    ray_owner = RayExecutor(address=ray_address, num_cpus=num_cpus, modules=exp.user_modules())
    keep = storage_path is not None
    storage = None
    try:
        requeue = state.start()                 # refuses a live twin before anything runs
        searcher = MemnasSearcher(state, max_trials, requeue)
        try:
            storage = os.path.abspath(os.path.expanduser(storage_path)) if keep else \
                tempfile.mkdtemp(prefix="memnas-tune-")
            watch = _Watch(searcher, exp.timeout_s)
            trainable = tune.with_resources(
                tune.with_parameters(_trainable, evaluator=exp.evaluator),
                {"cpu": exp.resources["num_cpus"], "gpu": exp.resources["num_gpus"]})
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=scheduler,
                    metric=None if own_metric else metric, mode=None if own_metric else mode,
                    num_samples=-1,             # the searcher says when to finish
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
        except BaseException:
            state.close("interrupted", leftover=searcher.unfinished())
            raise
    finally:
        ray_owner.shutdown()
        if storage and not keep:
            shutil.rmtree(storage, ignore_errors=True)
    leftover = searcher.unfinished()
    state.close("interrupted" if leftover else "completed", leftover=leftover)
    if type(scheduler) is not FIFOScheduler and searcher.started \
            and sched_metric not in searcher.reported:
        warnings.warn(f"the scheduler's metric {sched_metric!r} was never reported through "
                      f"ctx.report, so no trial could be stopped early (curves reported: "
                      f"{sorted(searcher.reported) or 'none'}); name one of those: a scheduler "
                      "object with its own metric, e.g. ASHAScheduler(metric='loss', "
                      "mode='min'), or run_with_tune(metric=..., mode=...)", stacklevel=2)


def _error_of(trial: Any) -> str:
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


def _quiet_failures(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not (msg.startswith("Trial task failed") or msg.startswith("Trials did not complete"))


def _trial_name(trial: Any) -> str:
    spec = trial.config.get(_KEY)
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
