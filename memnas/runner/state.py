"""SearchState: the bookkeeping of one search — algorithm, store rows, retries, heartbeats.

Every way of running a search (the driver loop over an executor, the Ray Tune searcher)
goes through this class, so trials are numbered, stored, retried and fed back alike.

The artifact channel: an algorithm that needs more than a reward (IMP needs trained
weights and gives masks; sharpDARTS gets architecture weights back) defines either or
both of two optional methods beside the `pg.DNAGenerator` ones:

- ``artifact_for(dna) -> dict | None``: called once per proposal; the payload is stored
  as the trial's ``input`` artifact and handed to the evaluator as ``ctx.artifact``.
  A trial with an input artifact bypasses the equivalence cache (its result depends on
  more than its candidate).
- ``feedback_artifact(dna, artifact) -> None``: called with the evaluator's
  ``Measurement.artifact`` (stored as the ``output`` artifact; None if there was none)
  just before ``feedback(dna, reward)``; on resume, for every finished trial in order,
  before ``recover(history)``.

An algorithm that sometimes has nothing to propose until a running trial reports back
(sharpDARTS derives its architecture from the supernet trial's output) raises
``StopIteration`` from ``propose`` while its attribute ``waiting`` is true: the driver
then waits for a running trial instead of ending the search.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import socket
from typing import TYPE_CHECKING, Any, Iterable

import pyglove as pg

from memnas.errors import ConfigError
from memnas.hashing import EquivalenceCache, canonical_json, symbolic_hash
from memnas.measurement import Context
from memnas.runner._decode import Decoder
from memnas.runner._records import (
    dna_from_json,
    failure,
    reward_of,
    summary_of,
    trial_seed,
    values_of,
)
from memnas.runner.progress import Progress
from memnas.store import Store, utcnow

if TYPE_CHECKING:
    from memnas.experiment import Experiment

FINISHED = ("completed", "failed", "cached")
HEARTBEAT_S = 5.0        # how often a driver marks itself and its trials alive
STALE_AFTER_S = 30.0     # a driver silent this long is presumed dead


@dataclasses.dataclass
class Pending:
    """A trial on its way to an evaluator: its stored row, DNA and candidate."""

    trial: dict[str, Any]
    dna: pg.DNA
    candidate: Any
    launch: bool = True  # False: answered by the equivalence cache, nothing to run
    artifact: dict[str, Any] | None = None  # the algorithm's input artifact, if any
    marked_running: bool = False  # its row already says running for this attempt

    @property
    def id(self) -> int:
        return self.trial["id"]


class SearchState:
    """Owns the algorithm and the experiment's rows; the only writer of its trials.

    Args:
      experiment: the experiment being run.
      store: its open store.
      progress: optional progress line to update.
    """

    def __init__(self, experiment: "Experiment", store: Store,
                 progress: Progress | None = None) -> None:
        self.exp = experiment
        self.store = store
        self.progress = progress
        self.spec = pg.dna_spec(experiment.space)
        self.decoder = Decoder(experiment.space)
        self.algorithm = experiment.make_algorithm()
        self.algorithm.setup(self.spec)
        self.multi = bool(getattr(self.algorithm, "multi_objective", False))
        self.exp_id = experiment._ensure_row(store)
        self.cache = EquivalenceCache(store, experiment.fingerprint(), experiment.reevaluate,
                                      experiment.hash_options) if experiment.cache else None
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self.finished = self.failed = 0
        self.best: float | None = None

    # -- start: refuse a live twin, replay history ------------------------------------
    def start(self) -> list[dict[str, Any]]:
        """Rebuilds the algorithm from stored trials; returns trials to run again.

        Raises:
          ConfigError: another driver is running this experiment right now.
        """
        self._refuse_live_driver()
        history, requeue = [], []
        wants = getattr(self.algorithm, "feedback_artifact", None)
        for t in self.store.trials(self.exp_id):
            dna = dna_from_json(t["dna"], self.spec)
            if wants is not None and t["status"] in ("completed", "cached"):
                wants(dna, self._output_artifact(t))
            if t["status"] in ("completed", "cached"):
                history.append((dna, reward_of(values_of(t), self.exp.objectives, self.multi)))
                self._count(t)
            elif t["status"] == "failed":
                history.append((dna, None))
                self._count(t)
            else:  # pending or running when the last driver stopped
                history.append((dna, None))
                requeue.append(t)
        if history:
            self.algorithm.recover(history)
        self.store.update_experiment(self.exp_id, status="running", driver=self.driver,
                                     heartbeat_at=utcnow())
        self.show()
        return requeue

    def _refuse_live_driver(self) -> None:
        row = self.store.experiment(self.exp.name)
        if row["status"] != "running" or not row["driver"] or row["driver"] == self.driver:
            return
        host, _, pid = row["driver"].rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            return  # its driver died on this machine
        age = (utcnow() - (row["heartbeat_at"] or _dt.datetime.min)).total_seconds()
        if age < STALE_AFTER_S:
            raise ConfigError(f"experiment {self.exp.name!r} is being run by driver "
                              f"{row['driver']} (heartbeat {age:.0f} s ago); stop it first")

    def remember_run(self, **settings: Any) -> None:
        """Stores this run's settings (max_trials, workers, ...) for `memnas resume`."""
        config = dict(self.store.experiment(self.exp.name)["config"] or {})
        config["last_run"] = settings
        config["module_file"] = self.exp._module_file or config.get("module_file")
        self.store.update_experiment(self.exp_id, config=config)

    # -- trials ----------------------------------------------------------------------
    def propose(self) -> Pending | None:
        """A new trial from the algorithm; None when the algorithm is exhausted.

        The trial is stored as pending and, when the equivalence cache knows its result,
        finished at once (``launch`` False) or attached to its running twin.
        """
        try:
            dna = self.algorithm.propose()
        except StopIteration:
            return None  # see `waiting` for "nothing until a running trial reports back"
        candidate = self.decoder(dna)
        sym = symbolic_hash(candidate)
        give = getattr(self.algorithm, "artifact_for", None)
        payload = give(dna) if give is not None else None
        kind, found, fn = self.cache.lookup(candidate, sym) \
            if self.cache and payload is None else ("miss", None, None)
        fields = dict(status="pending", dna=pg.to_json(dna), decisions=self.decoder.decisions(dna),
                      candidate=canonical_json(candidate, normalise=False),
                      summary=summary_of(candidate), sym_hash=sym, fn_hash=fn, attempt=1)
        if kind == "attach":
            fields.update(cached_from=found.id, cache_kind="attached")
        elif kind == "miss":  # it will run: stored as running at once, one write less
            now = utcnow()
            fields.update(status="running", started_at=now, heartbeat_at=now)
        base = self.exp.seed
        trial_id, number = self.store.add_trial(
            self.exp_id, derive=lambda n: {"seed": trial_seed(base, n)}, input_artifact=payload,
            **fields)
        pending = Pending({**fields, "id": trial_id, "number": number,
                           "seed": trial_seed(base, number)}, dna, candidate, artifact=payload,
                          marked_running=fields["status"] == "running")
        if payload is not None:
            return pending
        if kind == "hit":
            pending.launch = False
            self.finish(pending, EquivalenceCache.hit_outcome(found))
        elif kind == "attach":
            pending.launch = False
            self.cache.attach(found, pending)
        elif self.cache:
            self.cache.launched(pending)
        return pending

    @property
    def algorithm_waiting(self) -> bool:
        """True when the algorithm proposes nothing until a running trial reports back."""
        return bool(getattr(self.algorithm, "waiting", False))

    @property
    def num_waiting(self) -> int:
        """Trials waiting for a running twin's result."""
        return self.cache.num_waiting if self.cache else 0

    def requeue(self, trial: dict[str, Any]) -> Pending | None:
        """A stored trial made ready to run again, or None if it used up its attempts."""
        if trial["attempt"] >= self.exp.max_attempts:
            self.finish(trial, failure(f"gave up after {trial['attempt']} attempts: "
                                       f"{trial.get('error') or 'its run was interrupted'}"))
            return None
        trial = {**trial, "attempt": trial["attempt"] + 1, "cached_from": None, "cache_kind": None}
        self.store.clear_curve(trial["id"])
        self.store.update_trial(trial["id"], cached_from=None, cache_kind=None)
        dna = dna_from_json(trial["dna"], self.spec)
        pending = Pending(trial, dna, self.decoder(dna),
                          artifact=self.store.load_artifact(trial["id"], "input"))
        if self.cache and pending.artifact is None:
            self.cache.launched(pending)
        return pending

    def context(self, pending: Pending) -> Context:
        """The evaluator's view of a trial; marks the trial running (a new trial that
        will run was stored as running by `propose`)."""
        t = pending.trial
        if not pending.marked_running:
            now = utcnow()
            self.store.update_trial(t["id"], status="running", started_at=now, seed=t["seed"],
                                    attempt=t["attempt"], heartbeat_at=now)
            pending.marked_running = True
        return Context(seed=t["seed"], trial=t["number"], experiment=self.exp.name,
                       budget=dict(self.exp.budget), num_cpus=self.exp.resources["num_cpus"],
                       num_gpus=self.exp.resources["num_gpus"], artifact=pending.artifact)

    def lost(self, pending: Pending, reason: str) -> dict[str, Any]:
        """Records that a trial's worker died; returns the row to requeue (attempts permitting)."""
        self.store.update_trial(pending.id, status="pending", error=reason)
        return {**pending.trial, "error": reason}

    def finish(self, trial: dict[str, Any] | Pending, outcome: dict[str, Any]) -> str:
        """Stores an outcome, feeds the algorithm back, returns the final status.

        Raises:
          ConfigError: a completed result lacks one of the objectives (it is stored first).
        """
        return self.finish_many([(trial, outcome)])[0]

    def finish_many(self, items: Iterable[tuple[dict[str, Any] | Pending, dict[str, Any]]]
                    ) -> list[str]:
        """Like `finish` for several trials: all are stored in one transaction, then each
        is fed back to the algorithm in order. Returns their final statuses.

        Raises:
          ConfigError: a completed result lacks one of the objectives (all are stored first).
        """
        limit = self.exp.timeout_s
        done, updates = [], []
        for trial, outcome in items:
            pending = trial if isinstance(trial, Pending) else None
            trial = pending.trial if pending else trial
            if outcome["status"] == "completed" and limit and \
                    (outcome.get("wall_time") or 0) > limit:
                outcome = {**outcome, "status": "failed",
                           "error": f"evaluation took {outcome['wall_time']:.1f} s, over the "
                                    f"time limit of {limit} s"}
            extra = {k: outcome[k] for k in ("cached_from", "cache_kind", "saved_time")
                     if k in outcome}
            updates.append((trial["id"], outcome.get("curve", ()), dict(
                status=outcome["status"], metrics=outcome["metrics"], costs=outcome["costs"],
                error=outcome.get("error"), node=outcome.get("node"),
                wall_time=outcome.get("wall_time"), finished_at=utcnow(), **extra)))
            done.append((pending, trial, outcome, extra))
        if not updates:
            return []
        self.store.update_trials(updates, output_artifacts=[
            (trial["id"], outcome["artifact"]) for _, trial, outcome, _ in done
            if outcome["status"] == "completed" and outcome.get("artifact") is not None])
        for pending, trial, outcome, extra in done:
            self._fed_back(pending, trial, outcome, extra)
        self.show()
        return [outcome["status"] for _, _, outcome, _ in done]

    def _fed_back(self, pending: Pending | None, trial: dict[str, Any],
                  outcome: dict[str, Any], extra: dict[str, Any]) -> None:
        """Counts a stored outcome, feeds it to the algorithm, settles its waiting twins."""
        self._count({"status": outcome["status"], **outcome})
        waiters = self.cache.settled(pending) if (self.cache and pending) else []
        if outcome["status"] in ("completed", "cached"):
            values = {**outcome["costs"], **outcome["metrics"]}
            missing = [k for k in self.exp.objectives if k not in values]
            if missing:
                raise ConfigError(
                    f"objective {missing[0]!r} is not among the metrics the evaluator returned: "
                    f"{', '.join(sorted(values)) or '(none)'}")
            if pending is not None:
                wants = getattr(self.algorithm, "feedback_artifact", None)
                if wants is not None:
                    artifact = outcome.get("artifact")
                    if artifact is None and extra.get("cached_from"):  # the source's
                        artifact = self.store.load_artifact(extra["cached_from"], "output")
                    wants(pending.dna, artifact)
                self.algorithm.feedback(pending.dna,
                                        reward_of(values, self.exp.objectives, self.multi))
        if waiters:
            self.finish_many((w, EquivalenceCache.twin_outcome(pending, outcome))
                             for w in waiters)

    def _output_artifact(self, trial: dict[str, Any]) -> dict[str, Any] | None:
        """A finished trial's output artifact, or its cache source's for a cached trial."""
        found = self.store.load_artifact(trial["id"], "output")
        if found is None and trial.get("cached_from"):
            found = self.store.load_artifact(trial["cached_from"], "output")
        return found

    def heartbeat(self, pendings: Iterable[Pending]) -> None:
        """Marks this driver and the given running trials alive."""
        self.store.heartbeat(self.exp_id, [p.id for p in pendings], self.driver)

    def close(self, status: str, leftover: Iterable[Pending] = ()) -> None:
        """Ends the run: leftover trials go back to pending for the next driver."""
        for p in leftover:
            self.store.update_trial(p.id, status="pending", started_at=None)
        fields: dict[str, Any] = {}
        if self.cache and self.cache.hashed:
            config = dict(self.store.experiment(self.exp.name)["config"] or {})
            stats = dict(config.get("hashing") or {"hashed": 0, "hash_time_s": 0.0})
            stats["hashed"] += self.cache.hashed
            stats["hash_time_s"] += self.cache.hash_time
            config["hashing"] = stats
            fields["config"] = config
        self.store.update_experiment(self.exp_id, status=status, heartbeat_at=None, **fields)

    # -- progress ----------------------------------------------------------------------
    def _count(self, t: dict[str, Any]) -> None:
        self.finished += 1
        if t["status"] == "failed":
            self.failed += 1
            return
        name, direction = next(iter(self.exp.objectives.items()))
        v = values_of(t).get(name)
        if v is not None and (self.best is None or (v > self.best if direction == "max"
                                                    else v < self.best)):
            self.best = v

    def show(self) -> None:
        """Redraws the progress line, if any."""
        if self.progress is not None:
            name = next(iter(self.exp.objectives))
            best = "" if self.best is None else f"{name}={self.best:.4g}"
            self.progress.update(self.finished, self.failed, best)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
