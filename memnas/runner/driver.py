"""The driver loop: propose, dispatch, store, feed back — the one place a search advances."""

from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING, Any

import pyglove as pg

from memnas.errors import ConfigError
from memnas.hashing import canonical_json, symbolic_hash
from memnas.measurement import Context
from memnas.runner._trial import run_trial
from memnas.runner.executors import Executor, make_executor
from memnas.runner.progress import Progress
from memnas.store import Store, utcnow

if TYPE_CHECKING:
    from memnas.experiment import Experiment

FINISHED = ("completed", "failed", "cached")


def reward_of(values: dict[str, float], objectives: dict[str, str],
              multi_objective: bool) -> float | tuple[float, ...]:
    """The reward an algorithm maximises: objectives signed so that larger is better.

    Multi-objective algorithms get a tuple in objectives order; single-objective ones
    the first objective.
    """
    signed = [values[k] if d == "max" else -values[k] for k, d in objectives.items()]
    return tuple(signed) if multi_objective else signed[0]


def trial_seed(base: int, number: int) -> int:
    """The seed of trial ``number``: distinct per trial, reproducible per experiment."""
    return (base * 1_000_003 + number * 7_919 + 17) % (2**31 - 1)


def dna_from_json(value: Any, spec: pg.DNASpec) -> pg.DNA:
    """Rebuilds a stored DNA (``pg.to_json`` form) against the space's spec."""
    # pg.from_json consumes the dict it is given: hand it a copy.
    dna = pg.from_json(copy.deepcopy(value)) if isinstance(value, dict) else pg.DNA(value)
    return dna.use_spec(spec)


def decisions_of(dna: pg.DNA) -> dict[str, Any]:
    """The DNA's decisions as ``{name or path: readable value}`` for tables and plots."""
    out = {}
    for k, v in dna.to_dict(key_type="name_or_id", value_type="choice_and_literal").items():
        out[str(k)] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def summary_of(candidate: Any) -> str:
    """A short human-readable description of a candidate (its ``summary()`` if any)."""
    fn = getattr(candidate, "summary", None)
    if callable(fn):
        try:
            return str(fn())
        except Exception:  # a summary is a nicety; fall back to the symbolic form
            pass
    text = pg.format(candidate, compact=True) if isinstance(candidate, pg.Symbolic) else repr(candidate)
    return text if len(text) <= 300 else text[:297] + "..."


class _Driver:
    """State of one run of the loop; `run` is the loop itself."""

    def __init__(self, experiment: "Experiment", store: Store, executor: Executor,
                 max_trials: int, workers: int, progress: Progress | None) -> None:
        self.exp = experiment
        self.store = store
        self.executor = executor
        self.max_trials = max_trials
        self.workers = workers
        self.progress = progress
        self.spec = pg.dna_spec(experiment.space)
        self.algorithm = experiment.make_algorithm()
        self.algorithm.setup(self.spec)
        self.multi = bool(getattr(self.algorithm, "multi_objective", False))
        self.exp_id = experiment._ensure_row(store)
        self.in_flight: dict[Any, dict[str, Any]] = {}
        self.done = self.failed = 0
        self.best: float | None = None
        self.objectives_checked = False

    # -- history -----------------------------------------------------------------
    def _replay(self) -> list[dict[str, Any]]:
        """Recovers the algorithm from stored trials; returns the ones to run again."""
        history, requeue = [], []
        for t in self.store.trials(self.exp_id):
            dna = dna_from_json(t["dna"], self.spec)
            if t["status"] in ("completed", "cached"):
                history.append((dna, reward_of(self._values(t), self.exp.objectives, self.multi)))
                self.done += 1
                self._note_best(t)
                self.objectives_checked = True
            elif t["status"] == "failed":
                history.append((dna, None))
                self.done += 1
                self.failed += 1
            else:  # pending or running when the last driver stopped
                history.append((dna, None))
                requeue.append(t)
        if history:
            self.algorithm.recover(history)
        return requeue

    @staticmethod
    def _values(trial: dict[str, Any]) -> dict[str, float]:
        return {**(trial["costs"] or {}), **(trial["metrics"] or {})}

    def _note_best(self, trial: dict[str, Any]) -> None:
        name, direction = next(iter(self.exp.objectives.items()))
        v = self._values(trial).get(name)
        if v is None:
            return
        if self.best is None or (v > self.best if direction == "max" else v < self.best):
            self.best = v

    def _show(self) -> None:
        if self.progress is not None:
            name = next(iter(self.exp.objectives))
            best = "" if self.best is None else f"{name}={self.best:.4g}"
            self.progress.update(self.done, self.failed, best)

    # -- dispatch -----------------------------------------------------------------
    def _launch(self, trial: dict[str, Any], dna: pg.DNA, candidate: Any) -> None:
        ctx = Context(seed=trial["seed"], trial=trial["number"], experiment=self.exp.name,
                      budget=dict(self.exp.budget), num_cpus=self.exp.resources["num_cpus"],
                      num_gpus=self.exp.resources["num_gpus"])
        self.store.update_trial(trial["id"], status="running", started_at=utcnow())
        handle = self.executor.submit(run_trial, self.exp.evaluator, candidate, ctx,
                                      num_cpus=self.exp.resources["num_cpus"],
                                      num_gpus=self.exp.resources["num_gpus"])
        self.in_flight[handle] = {**trial, "_dna": dna}

    def _propose(self) -> bool:
        """Asks the algorithm for one more candidate and launches it; False when exhausted."""
        try:
            dna = self.algorithm.propose()
        except StopIteration:
            return False
        candidate = pg.materialize(self.exp.space, dna)
        number = self.store.next_trial_number(self.exp_id)
        fields = dict(number=number, status="pending", dna=pg.to_json(dna),
                      decisions=decisions_of(dna), candidate=canonical_json(candidate),
                      summary=summary_of(candidate), sym_hash=symbolic_hash(candidate),
                      seed=trial_seed(self.exp.seed, number))
        trial_id = self.store.add_trial(self.exp_id, **fields)
        self._launch({**fields, "id": trial_id}, dna, candidate)
        return True

    def _requeue(self, trial: dict[str, Any]) -> None:
        dna = dna_from_json(trial["dna"], self.spec)
        candidate = pg.materialize(self.exp.space, dna)
        self.store.clear_curve(trial["id"])
        self.store.update_trial(trial["id"], attempt=trial["attempt"] + 1)
        self._launch(trial, dna, candidate)

    # -- results ------------------------------------------------------------------
    def _collect(self, handle: Any) -> None:
        trial = self.in_flight.pop(handle)
        try:
            out = self.executor.result(handle)
        except Exception as e:  # the worker itself died or the task could not run
            out = {"status": "failed", "metrics": {}, "costs": {}, "curve": [],
                   "error": f"worker failure: {type(e).__name__}: {e}", "node": None,
                   "wall_time": None}
        self.store.update_trial(
            trial["id"], curve=out.get("curve", ()), status=out["status"],
            metrics=out["metrics"], costs=out["costs"], error=out.get("error"),
            node=out.get("node"), wall_time=out.get("wall_time"), finished_at=utcnow())
        self.done += 1
        if out["status"] != "completed":
            self.failed += 1
            return
        values = {**out["costs"], **out["metrics"]}
        missing = [k for k in self.exp.objectives if k not in values]
        if missing:
            raise ConfigError(
                f"objective {missing[0]!r} is not among the metrics the evaluator returned: "
                f"{', '.join(sorted(values)) or '(none)'}")
        self.objectives_checked = True
        self._note_best({"metrics": out["metrics"], "costs": out["costs"]})
        self.algorithm.feedback(trial["_dna"], reward_of(values, self.exp.objectives, self.multi))

    def run(self) -> None:
        requeue = self._replay()
        self.store.update_experiment(self.exp_id, status="running")
        self._show()
        exhausted = False
        try:
            while True:
                while len(self.in_flight) < self.workers and \
                        self.done + len(self.in_flight) < self.max_trials:
                    if requeue:
                        self._requeue(requeue.pop(0))
                    elif exhausted or not self._propose():
                        exhausted = True
                        break
                if not self.in_flight:
                    break
                for handle in self.executor.wait(list(self.in_flight), 1):
                    self._collect(handle)
                    self._show()
        except BaseException:
            self._abandon(requeue)
            raise
        self.store.update_experiment(self.exp_id, status="completed")

    def _abandon(self, requeue: list[dict[str, Any]]) -> None:
        """On an error or Ctrl-C: cancel what runs and leave it pending for a resume."""
        for handle, trial in list(self.in_flight.items()):
            self.executor.cancel(handle)
            self.store.update_trial(trial["id"], status="pending", started_at=None)
        self.in_flight.clear()
        self.store.update_experiment(self.exp_id, status="interrupted")


def run_experiment(experiment: "Experiment", max_trials: int, workers: int = 1,
                   executor: str | Executor = "ray", ray_address: str | None = None,
                   progress: bool | Progress = False) -> None:
    """Runs ``experiment`` until it holds ``max_trials`` finished trials.

    The store is opened first, so a bad URL fails before anything is started. An
    experiment that exists in the store is continued: the algorithm is rebuilt by
    replaying the stored results and trials left pending or running are run again.
    """
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be a positive integer, got {max_trials!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    store = Store(experiment.store)
    experiment._check_against_store(store)
    row = store.experiment(experiment.name)
    if row is not None:
        trials = store.trials(row["id"])
        if len(trials) >= max_trials and all(t["status"] in FINISHED for t in trials):
            store.close()  # nothing left to run: start no executor
            return
    if isinstance(executor, str):
        cpus = None
        if executor == "ray" and not (ray_address or os.environ.get("RAY_ADDRESS")):
            cpus = max(os.cpu_count() or 1,
                       math.ceil(workers * experiment.resources["num_cpus"]))
        executor = make_executor(executor, address=ray_address, num_cpus=cpus,
                                 module_dirs=experiment.module_dirs())
        owned = True
    else:
        owned = False
    bar = progress if isinstance(progress, Progress) else (Progress(max_trials) if progress else None)
    try:
        _Driver(experiment, store, executor, max_trials, workers, bar).run()
    finally:
        if bar is not None:
            bar.close()
        if owned:
            executor.shutdown()
        store.close()
