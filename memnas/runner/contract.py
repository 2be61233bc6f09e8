"""What the runner reads and passes around: the experiment's protocol, drafts, pending trials."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from typing import Any, Protocol

import pyglove as pg

from memnas.algorithms.base import Rung
from memnas.errors import ConfigError
from memnas.hashing import canonical_json
from memnas.records import BATCH_SCALE, TrialStatus
from memnas.runner._records import summary_of
from memnas.store import Store

__all__ = ["HEARTBEAT_S", "OOM_BATCH_SCALE", "STALE_AFTER_S", "Draft", "Pending",
           "RunnableExperiment", "batch_scale_of", "budget_key", "check_against_store",
           "check_warm_start", "new_trial_row"]

HEARTBEAT_S = 5.0        # how often a driver marks itself and its trials alive
STALE_AFTER_S = 30.0     # a driver silent this long is presumed dead
OOM_BATCH_SCALE = 0.5    # the batch scale of a trial run again after running out of GPU memory


class RunnableExperiment(Protocol):
    """What the runner reads of a `memnas.Experiment` (passed in, never imported here)."""

    name: str
    space: Any
    evaluator: Any
    objectives: dict[str, str]
    seed: int
    budget: dict[str, Any]
    resources: dict[str, float]
    max_attempts: int
    oom_retry: bool
    timeout_s: float | None
    cache: bool
    reevaluate: int
    hash_options: dict[str, Any]
    constraints: dict[str, tuple[str, float]]
    warm_start: list[str]
    module_file: str | None

    def make_algorithm(self) -> pg.geno.DNAGenerator: ...
    def fingerprint(self) -> str: ...
    def space_hash(self) -> str: ...
    def describe(self) -> dict[str, Any]: ...
    def user_modules(self) -> list[Any]: ...


@dataclasses.dataclass(eq=False)
class Pending:
    """A trial on its way to an evaluator: its stored row, DNA and candidate."""

    trial: dict[str, Any]
    dna: pg.DNA
    candidate: Any
    launch: bool = True  # False: answered by the equivalence cache, nothing to run
    rung: Rung | None = None  # a multi-fidelity trial's budget, parent and checkpoint
    artifact: dict[str, Any] | None = None  # the algorithm's input artifact, if any
    marked_running: bool = False  # its row already says running for this attempt
    started: float | None = None  # time.monotonic() when handed to its executor

    @property
    def id(self) -> int:
        return self.trial["id"]


def check_against_store(experiment: RunnableExperiment, store: Store) -> None:
    """Refuses to continue a stored experiment of this name with another space or objectives.

    Raises:
      ConfigError: the stored experiment differs; the message says how.
    """
    row = store.experiment(experiment.name)
    check_warm_start(experiment, store)
    if row is None:
        return
    if row["space_hash"] != experiment.space_hash():
        raise ConfigError(f"experiment {experiment.name!r} in {store.shown_url!r} was run with "
                          "a different search space; use a new name to search the changed space")
    if dict(row["objectives"]) != experiment.objectives:
        raise ConfigError(f"experiment {experiment.name!r} in {store.shown_url!r} has objectives "
                          f"{row['objectives']!r}, not {experiment.objectives!r}; use a new name")


def check_warm_start(experiment: RunnableExperiment, store: Store) -> None:
    """Refuses warm-start experiments that are not in the store or search another space.

    Raises:
      ConfigError: one line naming the experiment.
    """
    for name in experiment.warm_start:
        row = store.experiment(name)
        if row is None:
            raise ConfigError(f"warm_start experiment {name!r} is not in {store.shown_url!r}")
        if row["space_hash"] != experiment.space_hash():
            raise ConfigError(f"warm_start experiment {name!r} searched a different space than "
                              f"{experiment.name!r}; warm starts need the same space")


@dataclasses.dataclass
class Draft:
    """A proposal decoded and hashed, not stored yet."""

    dna: pg.DNA
    candidate: Any
    sym: str
    payload: dict[str, Any] | None  # the algorithm's input artifact, if any
    text: str = ""                  # the candidate's JSON as stored (computed once)
    rung: Rung | None = None        # a multi-fidelity trial's budget and parent
    budget: dict[str, Any] | None = None   # its whole budget (the experiment's merged)
    costs: dict[str, float] | None = None  # known before training, where checked
    violation: float = 0.0                 # of the constraints, by those costs


def budget_key(budget: dict[str, Any] | None) -> str | None:
    """sha256 of a trial's budget (None for none): the equivalence cache keys on it."""
    if not budget:
        return None
    return hashlib.sha256(json.dumps(budget, sort_keys=True, default=str).encode()).hexdigest()


def batch_scale_of(trial: dict[str, Any]) -> float:
    """The ``Context.batch_scale`` a stored trial runs with: 1, or the cost `BATCH_SCALE`
    its row holds once it was sent back to run with a smaller batch (a trial not yet
    finished holds no other cost)."""
    return float((trial.get("costs") or {}).get(BATCH_SCALE, 1.0))


def new_trial_row(draft: Draft, decisions: dict[str, Any], kind: str, fn_hash: str | None,
                  now: _dt.datetime, parent_id: int | None = None) -> dict[str, Any]:
    """The stored columns of a new trial: ``running`` when it will run (``kind`` "miss"),
    ``pending`` when the equivalence cache answers it ("hit", "attach") or it is
    ``infeasible`` (its costs break the constraints: never run)."""
    row = dict(status=TrialStatus.PENDING.value, dna=pg.to_json(draft.dna), decisions=decisions,
               candidate=draft.text or canonical_json(draft.candidate, normalise=False),
               summary=summary_of(draft.candidate), sym_hash=draft.sym, fn_hash=fn_hash,
               attempt=1, budget=draft.budget or None, budget_key=budget_key(draft.budget),
               parent_id=parent_id)
    if kind == "infeasible":
        row.update(status=TrialStatus.INFEASIBLE.value, costs=dict(draft.costs or {}),
                   error=f"infeasible: breaks the constraints by {draft.violation:.4g} "
                         f"(relative excess) before training", finished_at=now)
    elif kind == "attach":
        row.update(cache_kind="attached")
    elif kind == "miss":  # stored as running at once, one write less
        row.update(status=TrialStatus.RUNNING.value, started_at=now, heartbeat_at=now)
    return row

