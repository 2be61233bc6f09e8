"""SearchState: the bookkeeping of one search — algorithm, store rows, retries, time limits.

Every way of running a search goes through the operations of this class, so trials are
numbered, stored, retried, timed out and fed back alike: `session` starts a run
(refuses a live twin driver, replays the stored history into the algorithm) and closes
it; `next_trial` gives the next trial to launch (one left unfinished first, else a new
proposal) or None; `context` marks it running; `finish_many`, `lost` and `expire` end
or requeue it. The driver loop (`memnas.runner.driver.drive`) and the Ray Tune searcher
(`memnas.runner.tune`) only move trials between these calls and their executors.

The algorithm's hooks beyond PyGlove's are `memnas.algorithms.AlgorithmHooks`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterable, Iterator, Mapping

import pyglove as pg

from memnas.algorithms.base import hooks_of
from memnas.constraints import penalty, violation
from memnas.errors import ConfigError, StoreFull, StoreUnavailable
from memnas.hashing import EquivalenceCache
from memnas.measurement import Context, costs_before_training
from memnas.records import (BATCH_SCALE, FED_BACK, FINISHED, OOM, WITH_RESULT,
                            ExperimentStatus, Outcome, TrialStatus, timed_out_reason, values_of)
from memnas.runner._decode import Decoder
from memnas.runner._drafting import Drafting
from memnas.runner._records import reward_of
from memnas.runner.claim import claim, driver_id, hold
from memnas.runner.contract import (OOM_BATCH_SCALE, Pending, RunnableExperiment,
                                    batch_scale_of)
from memnas.runner.progress import Progress, Tally
from memnas.runner.replay import recover, replay_calls, warm_history, warm_start
from memnas.store import Store, utcnow

class SearchState(Drafting):
    """Owns the algorithm and the experiment's rows; the only writer of its trials.

    Which trial comes next (new proposals, drafted, checked and stored; trials run
    again) is `memnas.runner._drafting.Drafting`'s part of this class.

    Constructing one claims the experiment (`memnas.runner.claim.claim`; ConfigError if
    another driver runs it).

    Args:
      experiment: the experiment being run.
      store: its open store.
      progress: optional progress line to update.
      max_trials: finished trials the experiment should hold when the run ends (set
        again by `session`).
    """

    def __init__(self, experiment: RunnableExperiment, store: Store,
                 progress: Progress | None = None, max_trials: int = 0) -> None:
        self.exp = experiment
        self.store = store
        self.max_trials = max_trials
        self.spec = pg.dna_spec(experiment.space)
        self.decoder = Decoder(experiment.space)
        self._new_algorithm()
        self.multi = bool(getattr(self.algorithm, "multi_objective", False))
        self.cache = EquivalenceCache(store, experiment.fingerprint(), experiment.reevaluate,
                                      experiment.hash_options) if experiment.cache else None
        self.driver = driver_id()
        self.tally = Tally(experiment.objectives, progress)
        self.in_flight: dict[int, Pending] = {}   # launched, not finished: trial id -> Pending
        self._queue: list[dict[str, Any]] = []    # stored trials to run again
        self._exhausted = False
        self._calls = 0     # calls made to the algorithm (proposals and feedbacks), replayed
        self.max_cost: float | None = None
        self._dna_of: dict[int, pg.DNA] = {}     # trial id -> the DNA object proposed for it
        self._trial_of: dict[int, int] = {}      # id(that DNA object) -> trial id
        self._source: dict[int, int] = {}        # trial id -> trial whose result it reused
        self.exp_id = claim(store, experiment, self.driver)  # ConfigError: another runs it

    def _new_algorithm(self) -> None:
        self.algorithm = self.exp.make_algorithm()
        self.algorithm.setup(self.spec)
        self.hooks = hooks_of(self.algorithm)
        has_costs = callable(getattr(self.exp.evaluator, "costs", None))
        self._costs_memo: dict[str, dict[str, float]] = {}
        self.hooks.bind(dict(self.exp.objectives), self.cheap_costs if has_costs else None)

    def cheap_costs(self, dna: pg.DNA) -> dict[str, float]:
        """A DNA's costs known before training (the evaluator's ``costs`` hook), memoised."""
        key = repr(dna.to_numbers())
        found = self._costs_memo.get(key)
        if found is None:
            found = self._costs_memo[key] = costs_before_training(self.exp.evaluator,
                                                                  self.decoder(dna))
        return found

    def _remember(self, trial_id: int, dna: pg.DNA) -> None:
        self._dna_of[trial_id] = dna
        self._trial_of[id(dna)] = trial_id

    # -- a run: start and close in one place --------------------------------------------
    @contextlib.contextmanager
    def session(self, max_trials: int, max_cost: float | None = None
                ) -> Iterator["SearchState"]:
        """Starts a run that ends with ``max_trials`` finished trials (or ``max_cost``
        budget spent), and closes it.

        On entry the algorithm is rebuilt from the stored trials (`start`); on exit the
        experiment is marked completed, or interrupted when an error (Ctrl-C included)
        ends the run or trials are left in flight, which go back to pending.
        """
        self.max_trials = max_trials
        self.max_cost = max_cost
        self.start()
        try:
            yield self
        except (StoreUnavailable, StoreFull):
            self.in_flight.clear()  # the store is gone: its rows say running; resume requeues them
            raise
        except BaseException:
            self.close(ExperimentStatus.INTERRUPTED)
            raise
        self.close(ExperimentStatus.INTERRUPTED if self.in_flight else ExperimentStatus.COMPLETED)

    def start(self) -> None:
        """Rebuilds the algorithm from stored trials; queues those left unfinished.

        Raises:
          ConfigError: another driver is running this experiment right now.
        """
        hold(self.store, self.exp.name, self.exp_id, self.driver)
        trials = self.store.trials(self.exp_id)
        for t in trials:
            if t.get("cached_from"):
                self._source[t["id"]] = t["cached_from"]
            if t["status"] in FINISHED:
                self.tally.count(t["status"], values_of(t))
            else:  # pending or running when the last driver stopped: run it again
                self._queue.append(t)
        order = self.store.feedback_order(self.exp_id)
        warm = warm_history(self.store, self.exp, self.exp_id, self.spec, self._stored_reward)
        warm_start(self.algorithm, warm)
        proposed: dict[int, pg.DNA] = {}
        calls = replay_calls(self.algorithm, self.hooks, trials, order, self._stored_reward,
                             self._output_artifact, proposed)
        if calls is None:  # cannot be replayed: PyGlove's recover on a fresh algorithm
            self._new_algorithm()
            warm_start(self.algorithm, warm)
            proposed.clear()
            calls = recover(self.algorithm, self.hooks, trials, self.spec, self._stored_reward,
                            self._output_artifact, proposed)
            calls = max([calls, *(seq + 1 for seq in order.values())])  # after any stored
        self._calls = calls
        for trial_id, dna in proposed.items():
            self._remember(trial_id, dna)
        self.heartbeat()  # `hold` claimed it; a long replay must not look like a dead driver
        self.tally.show()

    def remember_run(self, **settings: Any) -> None:
        """Stores this run's settings (max_trials, workers, ...) for `memnas resume`."""
        config = dict(self.store.experiment(self.exp.name)["config"] or {})
        config["last_run"] = settings
        config["module_file"] = self.exp.module_file or config.get("module_file")
        self.store.update_experiment(self.exp_id, config=config)

    def close(self, status: str) -> None:
        """Ends the run: trials still in flight go back to pending for the next driver."""
        for p in self.in_flight.values():
            self.store.update_trial(p.id, status=TrialStatus.PENDING.value, started_at=None)
        self.in_flight.clear()
        fields: dict[str, Any] = {}
        if self.cache and (self.cache.hashed or self.cache.symbolic_time):
            config = dict(self.store.experiment(self.exp.name)["config"] or {})
            stats = {"hashed": 0, "hash_time_s": 0.0, "symbolic_time_s": 0.0,
                     **(config.get("hashing") or {})}
            stats["hashed"] += self.cache.hashed
            stats["hash_time_s"] += self.cache.hash_time
            stats["symbolic_time_s"] += self.cache.symbolic_time
            config["hashing"] = stats
            fields["config"] = config
        self.store.update_experiment(self.exp_id, status=ExperimentStatus(status).value,
                                     heartbeat_at=None, **fields)

    # -- a trial's run ------------------------------------------------------------------
    def context(self, pending: Pending) -> Context:
        """The evaluator's view of a trial; marks it running and starts its clock."""
        t = pending.trial
        if not pending.marked_running:
            now = utcnow()
            self.store.update_trial(t["id"], status=TrialStatus.RUNNING.value, started_at=now,
                                    seed=t["seed"], attempt=t["attempt"], heartbeat_at=now)
            pending.marked_running = True
        pending.started = time.monotonic()
        resume = None
        if t.get("parent_id") is not None:
            resume = self._artifact_of(t["parent_id"])
        return Context(seed=t["seed"], trial=t["number"], experiment=self.exp.name,
                       budget=dict(t.get("budget") or self.exp.budget),
                       num_cpus=self.exp.resources["num_cpus"],
                       num_gpus=self.exp.resources["num_gpus"], artifact=pending.artifact,
                       resume=resume, checkpoint=bool(pending.rung and pending.rung.checkpoint),
                       batch_scale=batch_scale_of(t))

    def _artifact_of(self, trial_id: int) -> dict[str, Any] | None:
        """A trial's output artifact, or that of the trial whose result it reused."""
        found = self.store.load_artifact(trial_id, "output")
        if found is None and trial_id in self._source:
            found = self.store.load_artifact(self._source[trial_id], "output")
        return found

    def lost(self, pending: Pending, reason: str) -> None:
        """Records that a trial's worker died; it runs again while it has attempts."""
        self.in_flight.pop(pending.id, None)
        self.store.update_trial(pending.id, status=TrialStatus.PENDING.value, error=reason)
        self._queue.append({**pending.trial, "error": reason})

    def over_time(self, seconds: float | None) -> bool:
        """True when ``seconds`` of running is over the experiment's ``timeout_s``."""
        limit = self.exp.timeout_s
        return bool(limit) and seconds is not None and seconds > limit

    def timed_out(self, seconds: float | None = None, **fields: Any) -> Outcome:
        """The failed outcome of a trial over the time limit (`timed_out_reason`)."""
        return Outcome.failed(timed_out_reason(self.exp.timeout_s, seconds), **fields)

    def expire(self, grace: float = 0.0) -> list[Pending]:
        """Fails the trials in flight for longer than the time limit plus ``grace`` since
        they were handed to their executor (a backstop: a worker stops its evaluator at
        the limit itself, `memnas.runner._trial.run_trial`); returns them, so the caller
        cancels their runs."""
        now = time.monotonic()
        late = [p for p in self.in_flight.values()
                if p.started is not None and self.over_time(now - p.started - grace)]
        self.finish_many((p, self.timed_out()) for p in late)
        return late

    def finish(self, trial: dict[str, Any] | Pending, outcome: Outcome) -> TrialStatus:
        """`finish_many` for one trial: stores it, feeds it back, returns its status."""
        return self.finish_many([(trial, outcome)])[0]

    def finish_many(self, items: Iterable[tuple[dict[str, Any] | Pending, Outcome]]
                    ) -> list[TrialStatus]:
        """Like `finish` for several trials: all are stored in one transaction (with the
        order of their feedbacks), then each is fed back to the algorithm in order, then
        the trials that waited for them are settled. Returns their final statuses.

        A trial that ran out of GPU memory (`memnas.records.OOM`) in its first run at
        full batch, under ``Experiment(oom_retry=True)`` and with an attempt left, is not
        finished: it goes back to pending in the same transaction, with the cost
        `memnas.records.BATCH_SCALE` 0.5 (its next run's ``Context.batch_scale``; so
        stored, a resumed run runs it at half batch too, and never halves it twice),
        and runs again (status ``pending`` returned for it). Every trial run at a batch
        scale other than 1 is stored with that cost.

        Raises:
          ConfigError: a result lacks one of the objectives: it is stored failed with
            that reason, the others are stored and fed back, then this is raised.
        """
        done, updates, artifacts, order, retry = [], [], [], [], []
        problem: ConfigError | None = None
        for trial, outcome in items:
            pending = trial if isinstance(trial, Pending) else None
            trial = pending.trial if pending else trial
            scale = batch_scale_of(trial)
            if pending is not None and self._retries_smaller(trial, outcome, scale):
                costs = {BATCH_SCALE: scale * OOM_BATCH_SCALE}
                updates.append((trial["id"], [], dict(status=TrialStatus.PENDING.value,
                                                      error=outcome.error, costs=costs)))
                retry.append({**trial, "error": outcome.error, "costs": costs})
                done.append((None, outcome.replace(status=TrialStatus.PENDING)))
                self.in_flight.pop(trial["id"], None)
                continue
            if scale != 1:
                outcome = outcome.replace(costs={**outcome.costs, BATCH_SCALE: scale})
            if outcome.status == TrialStatus.COMPLETED and self.over_time(outcome.wall_time):
                # An executor that cannot cancel (in-process) ran it to the end.
                outcome = self.timed_out(outcome.wall_time, node=outcome.node,
                                         wall_time=outcome.wall_time)
            if pending is not None and pending.rung is not None and \
                    outcome.status in WITH_RESULT:
                spent = 0.0 if outcome.status == TrialStatus.CACHED else \
                    float(pending.rung.budget.get(self.hooks.budget_unit or "", 0.0))
                outcome = outcome.replace(costs={"budget_spent": spent, **outcome.costs})
            if outcome.status == TrialStatus.COMPLETED and self.exp.constraints:
                broken = violation(outcome.values, self.exp.constraints)
                if broken:
                    outcome = outcome.replace(costs={**outcome.costs,
                                                     "constraint_violation": broken})
            missing = [k for k in self.exp.objectives if k not in outcome.values]
            if outcome.status in WITH_RESULT and missing:
                reason = (f"objective {missing[0]!r} is not among the metrics the evaluator "
                          f"returned: {', '.join(sorted(outcome.values)) or '(none)'}")
                problem = problem or ConfigError(reason)
                outcome = outcome.replace(status=TrialStatus.FAILED, error=reason,
                                          cached_from=None, cache_kind=None)
            fields = dict(status=outcome.status.value, metrics=outcome.metrics,
                          costs=outcome.costs, error=outcome.error, node=outcome.node,
                          wall_time=outcome.wall_time, finished_at=utcnow())
            if outcome.cached_from is not None:
                self._source[trial["id"]] = outcome.cached_from
            if outcome.cache_kind is not None:
                fields.update(cached_from=outcome.cached_from, cache_kind=outcome.cache_kind,
                              saved_time=outcome.saved_time)
            updates.append((trial["id"], outcome.curve, fields))
            if outcome.status == TrialStatus.COMPLETED and outcome.artifact is not None:
                artifacts.append((trial["id"], outcome.artifact))
            if pending is not None and outcome.status in FED_BACK:
                order.append((self.exp_id, trial["id"], self._calls))
                self._calls += 1
            done.append((pending, outcome))
            self.in_flight.pop(trial["id"], None)
        if not updates:
            return []
        self.store.update_trials(updates, output_artifacts=artifacts, feedback=order)
        self._queue.extend(retry)       # run again (`_requeue`), as a lost trial is
        settle = []
        for pending, outcome in done:
            if outcome.status == TrialStatus.PENDING:
                continue
            self.tally.count(outcome.status, outcome.values)
            if pending is None:
                continue
            if outcome.status in FED_BACK:
                artifact = outcome.artifact
                if artifact is None and outcome.cached_from:  # the source's
                    artifact = self.store.load_artifact(outcome.cached_from, "output")
                self.hooks.feedback_artifact(pending.dna, artifact)
                self.algorithm.feedback(pending.dna, self._reward(outcome.values,
                                                                  outcome.status))
            if self.cache:
                settle.extend((w, EquivalenceCache.twin_outcome(pending, outcome))
                              for w in self.cache.settled(pending))
        self.tally.show()
        if settle:
            self.finish_many(settle)
        if problem is not None:
            raise problem
        return [outcome.status for _, outcome in done]

    def _retries_smaller(self, trial: Mapping[str, Any], outcome: Outcome,
                         scale: float) -> bool:
        """Whether a trial that ended with ``outcome`` runs again with half its batch:
        out of GPU memory at full batch, under ``oom_retry``, with an attempt left."""
        return outcome.error_kind == OOM and outcome.status == TrialStatus.FAILED \
            and scale == 1 and bool(getattr(self.exp, "oom_retry", False)) \
            and trial["attempt"] < self.exp.max_attempts

    def _reward(self, values: Mapping[str, float], status: str = TrialStatus.COMPLETED
                ) -> float | tuple[float, ...]:
        """The algorithm's reward; a penalty below every real one for a trial breaking
        the constraints (`memnas.constraints.INFEASIBLE_REWARD`)."""
        broken = violation(values, self.exp.constraints) if self.exp.constraints else 0.0
        if broken or status == TrialStatus.INFEASIBLE:
            return penalty(broken, len(self.exp.objectives), self.multi)
        return reward_of(dict(values), self.exp.objectives, self.multi)

    def _stored_reward(self, trial: Mapping[str, Any]) -> float | tuple[float, ...]:
        return self._reward(values_of(trial), trial["status"])

    def _output_artifact(self, trial: dict[str, Any]) -> dict[str, Any] | None:
        """A finished trial's output artifact, or its cache source's for a cached trial."""
        found = self.store.load_artifact(trial["id"], "output")
        if found is None and trial.get("cached_from"):
            found = self.store.load_artifact(trial["cached_from"], "output")
        return found

    def heartbeat(self) -> None:
        """Marks this driver and its trials in flight alive."""
        self.store.heartbeat(self.exp_id, list(self.in_flight), self.driver)

