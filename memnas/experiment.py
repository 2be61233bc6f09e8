"""Experiment: a search space, an algorithm, an evaluator, objectives and a store, run as one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pyglove as pg

from memnas.algorithms import hooks_of, make_algorithm
from memnas.constraints import check_constraints
from memnas.errors import ConfigError
from memnas.hashing import canonical_json, evaluator_fingerprint
from memnas.pareto import check_objectives
from memnas.store import DEFAULT_URL, normalize_url

if TYPE_CHECKING:
    from memnas.result import Result


class Experiment:
    """A neural-architecture search, defined once and run anywhere.

    Args:
      name: unique name of the experiment in its store.
      space: any PyGlove hyper value (``pg.oneof``, ``pg.floatv``, nested spec objects...).
      evaluator: picklable callable ``(candidate, ctx) -> memnas.Measurement | dict``.
      algorithm: a registered name ("random", "evolution", "nsga2") or a ``pg.geno.DNAGenerator``.
      objectives: ``{"metric": "max" | "min"}``; the first is the one single-objective
        algorithms optimise.
      store: SQLAlchemy URL of the store (default ``sqlite:///memnas.db``).
      seed: base seed of the algorithm and of every trial.
      budget: passed to the evaluator as ``ctx.budget`` (e.g. ``{"steps": 200}``).
      resources: per-trial ``{"num_cpus": 1, "num_gpus": 0}`` (fractions allowed).
      algorithm_options: keyword options of a named algorithm (e.g. ``population_size``).
      max_attempts: runs of a trial whose worker dies (or whose driver stopped) before
        it is stored as failed.
      timeout_s: seconds an evaluation may take, counted from its start on the worker;
        a slower one is stopped there at the limit and stored as failed. None: no limit.
      cache: use the functional-equivalence cache: a candidate whose canonical or
        functional hash matches a stored evaluation under the same evaluator
        fingerprint reuses it (status ``cached``); one matching a running trial waits
        for it.
      reevaluate: evaluations of one hash before the cache reuses their mean.
      hash_options: options of `memnas.hashing.functional_hash` (``probe`` for
        callable candidates, ``train_steps``, ``digits``).
      constraints: ``{"metric": ("<=" | ">=", bound)}``. A constraint on a cost the
        evaluator knows before training (its ``costs(candidate)`` hook: params,
        ``state_bytes``, FLOPs for memnas's trainers) is checked before launching: a
        candidate breaking it is stored ``infeasible`` with its costs and never
        trained. One on a metric known only after training marks the trial infeasible
        for the algorithm (constrained domination, `memnas.constraints`) and keeps it
        off best values and Pareto fronts.
      warm_start: names of finished experiments in the same store, on the same space,
        whose results the algorithm learns from before its first proposal; the new
        experiment's trials stay its own.
      oom_retry: run a trial whose evaluator ran out of GPU memory once more, with
        ``ctx.batch_scale`` 0.5 (trainers halve their batch size; the run is stored with
        the cost ``batch_scale``); one of its ``max_attempts`` (at least 2 then). False
        (default): it is stored failed with the one line saying so.

    Raises:
      ConfigError: a value memnas cannot use; the message names it.
    """

    def __init__(self, name: str, space: Any, evaluator: Callable[..., Any],
                 algorithm: Any = "evolution",
                 objectives: Mapping[str, str] | None = None,
                 store: str = DEFAULT_URL, seed: int = 0,
                 budget: Mapping[str, Any] | None = None,
                 resources: Mapping[str, float] | None = None,
                 algorithm_options: Mapping[str, Any] | None = None,
                 max_attempts: int = 3, timeout_s: float | None = None,
                 cache: bool = True, reevaluate: int = 1,
                 hash_options: Mapping[str, Any] | None = None,
                 constraints: Mapping[str, Any] | None = None,
                 warm_start: Sequence[str] | None = None, oom_retry: bool = False) -> None:
        self._args = dict(name=name, space=space, evaluator=evaluator, algorithm=algorithm,
                          objectives=objectives, store=store, seed=seed, budget=budget,
                          resources=resources, algorithm_options=algorithm_options,
                          max_attempts=max_attempts, timeout_s=timeout_s,
                          oom_retry=oom_retry, cache=cache,
                          reevaluate=reevaluate, hash_options=hash_options,
                          constraints=constraints, warm_start=warm_start)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ConfigError(f"experiment name must be a non-empty string of at most 200 "
                              f"characters, got {name!r}")
        self.name = name
        self.space = space
        try:
            spec = pg.dna_spec(space)
        except Exception as e:
            raise ConfigError(f"space is not a PyGlove hyper value ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}): {space!r:.100}") from None
        if not spec.decision_points:
            raise ConfigError(f"space has no decisions (use pg.oneof, pg.floatv, ...): {space!r:.100}")
        _check_space(space)  # before anything is written: the store keeps its JSON and hash
        if not callable(evaluator):
            raise ConfigError(f"evaluator must be callable as (candidate, ctx), got "
                              f"{type(evaluator).__name__}: {evaluator!r:.80}")
        self.evaluator = evaluator
        self.algorithm = algorithm
        self.algorithm_options = dict(algorithm_options or {})
        self.seed = int(seed)
        # Fails now, before anything is written, on a bad name or an evaluator the
        # algorithm cannot use (sharp_darts without a SupernetEvaluator).
        hooks_of(self.make_algorithm()).check_evaluator(evaluator)
        try:
            self.objectives = check_objectives(objectives or {"accuracy": "max"})
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not isinstance(store, str) or not store:
            raise ConfigError(f"store must be a SQLAlchemy URL string, got {store!r}")
        self.store = normalize_url(store)
        self.budget = dict(budget or {})
        res = {"num_cpus": 1.0, "num_gpus": 0.0, **dict(resources or {})}
        unknown = set(res) - {"num_cpus", "num_gpus"}
        if unknown or res["num_cpus"] < 0 or res["num_gpus"] < 0:
            raise ConfigError(f"resources must be {{'num_cpus': >=0, 'num_gpus': >=0}}, got {dict(resources or {})!r}")
        self.resources = res
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ConfigError(f"timeout_s must be a positive number of seconds or None, "
                              f"got {timeout_s!r}")
        if not isinstance(oom_retry, bool) or (oom_retry and max_attempts < 2):
            raise ConfigError(f"oom_retry must be True or False, and True needs max_attempts "
                              f">= 2 (its retry is an attempt), got oom_retry={oom_retry!r}, "
                              f"max_attempts={max_attempts!r}")
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.oom_retry = oom_retry
        if not isinstance(reevaluate, int) or reevaluate < 1:
            raise ConfigError(f"reevaluate must be a positive integer, got {reevaluate!r}")
        self.cache = bool(cache)
        self.reevaluate = reevaluate
        self.hash_options = dict(hash_options or {})
        try:
            self.constraints = check_constraints(constraints)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self._check_constraint_metrics()
        if isinstance(warm_start, str):
            warm_start = [warm_start]
        if warm_start is not None and (not isinstance(warm_start, (list, tuple)) or not all(
                isinstance(w, str) and w for w in warm_start)):
            raise ConfigError(f"warm_start must be a list of experiment names, got "
                              f"{warm_start!r:.100}")
        if name in (warm_start or ()):
            raise ConfigError(f"experiment {name!r} cannot warm-start from itself")
        self.warm_start = list(dict.fromkeys(warm_start or ()))
        self.module_file: str | None = None   # set when loaded from an experiment file
        self.module_name: str | None = None

    def _check_constraint_metrics(self) -> None:
        """Refuses a constraint on a metric that is neither an objective nor a cost the
        evaluator computes before training (asked of one candidate of the space)."""
        unknown = [m for m in self.constraints if m not in self.objectives]
        if not unknown:
            return
        cheap: dict[str, float] = {}
        if callable(getattr(self.evaluator, "costs", None)):
            from memnas.measurement import costs_before_training

            dna = pg.random_dna(pg.dna_spec(self.space), random.Random(0))
            try:
                cheap = costs_before_training(self.evaluator,
                                              pg.materialize(self.space, dna))
            except Exception as e:
                raise ConfigError(f"the evaluator's costs(candidate) failed: "
                                  f"{type(e).__name__}: {e}"[:300]) from None
        for m in unknown:
            if m not in cheap:
                raise ConfigError(
                    f"constraint on unknown metric {m!r}: expected an objective "
                    f"({', '.join(self.objectives)}) or a cost the evaluator computes before "
                    f"training ({', '.join(sorted(cheap)) or 'it has no costs(candidate) hook'})")

    def replace(self, **changes: Any) -> "Experiment":
        """A new Experiment with the same arguments except ``changes``, checked as any is.

        ``memnas run --name/--store`` use it; an Experiment is never changed in place.

        Raises:
          ConfigError: a changed value memnas cannot use, or an unknown argument.
        """
        unknown = set(changes) - set(self._args)
        if unknown:
            raise ConfigError(f"Experiment has no argument {sorted(unknown)[0]!r}; expected "
                              f"one of {sorted(self._args)}")
        new = Experiment(**{**self._args, **changes})
        new.module_file, new.module_name = self.module_file, self.module_name
        return new

    # -- pieces the driver asks for -------------------------------------------------
    def make_algorithm(self) -> pg.geno.DNAGenerator:
        """A fresh DNA generator for this experiment (seeded by ``seed`` when named)."""
        return make_algorithm(self.algorithm, seed=self.seed, **self.algorithm_options)

    def fingerprint(self) -> str:
        """The evaluator's fingerprint (its results are reusable across experiments sharing it)."""
        return evaluator_fingerprint(self.evaluator)

    def space_json(self) -> dict[str, Any]:
        """The space as PyGlove JSON."""
        return pg.to_json(self.space)

    def space_hash(self) -> str:
        """sha256 of the space's canonical JSON: equal spaces, equal hash, in any process."""
        return hashlib.sha256(canonical_json(self.space, normalise=False).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The experiment as stored in its row: space, hashes, algorithm, evaluator, config."""
        if isinstance(self.algorithm, str):
            algorithm = {"name": self.algorithm, "options": self.algorithm_options}
        else:
            algorithm = {"name": type(self.algorithm).__name__, "object": pg.to_json(self.algorithm)}
        ev = self.evaluator
        evaluator = {"type": f"{getattr(ev, '__module__', '?')}."
                             f"{getattr(ev, '__qualname__', type(ev).__qualname__)}",
                     "repr": repr(ev)[:1000]}
        if dataclasses.is_dataclass(ev) and not isinstance(ev, type):
            evaluator["config"] = {k: repr(v) for k, v in dataclasses.asdict(ev).items()}
        return {"space": self.space_json(), "space_hash": self.space_hash(),
                "fingerprint": self.fingerprint(),
                "algorithm": algorithm, "evaluator": evaluator,
                "objectives": self.objectives,
                "config": {"seed": self.seed, "budget": self.budget, "resources": self.resources,
                           "constraints": {k: list(v) for k, v in self.constraints.items()},
                           "warm_start": self.warm_start,
                           "max_attempts": self.max_attempts, "timeout_s": self.timeout_s,
                           "oom_retry": self.oom_retry,
                           "cache": self.cache, "reevaluate": self.reevaluate,
                           "module_file": self.module_file}}

    def user_modules(self) -> list[Any]:
        """The user's modules Ray workers must import: the experiment file's, the
        evaluator's and those of the classes in the space (not installed packages)."""
        names = {getattr(self.evaluator, "__module__", None), type(self.evaluator).__module__,
                 self.module_name}
        _type_modules(self.space_json(), names)
        out = []
        for name in sorted(n for n in names if n and n != "__main__"):
            mod = sys.modules.get(name)
            path = getattr(mod, "__file__", None)
            if not path or "site-packages" in path or name.split(".")[0] in _NOT_USER:
                continue
            out.append(mod)
        return out

    # -- the public verbs ----------------------------------------------------------
    def run(self, max_trials: int = 20, workers: int = 1, executor: str = "ray",
            ray_address: str | None = None, progress: bool = False,
            scheduler: Any = None, batch: int | str = 1,
            max_cost: float | None = None, store_patience_s: float = 300.0) -> "Result":
        """Runs the search until the experiment holds ``max_trials`` finished trials
        (or, with ``max_cost``, has spent that much budget).

        Args:
          max_trials: total finished trials wanted (an existing experiment is continued).
          workers: trials evaluated at the same time.
          executor: "ray" (default; local Ray unless ``ray_address``), "local"
            (in-process) or "tune" (Ray Tune, whose scheduler may stop trials early).
          ray_address: address of an existing Ray cluster.
          progress: show a live progress line on stderr.
          scheduler: with ``executor="tune"`` only: "asha" (default), "fifo" or a Ray
            Tune scheduler object (e.g. ``ASHAScheduler(metric="loss", mode="min")`` to
            compare a curve metric other than the first objective).
          batch: trials per task: 1 (default), an integer, or "auto" (several per task
            once trials are timed under 10 ms: tabular benchmarks, surrogates). An
            algorithm then has up to ``workers * batch`` proposals in flight.
          max_cost: with a multi-fidelity algorithm ("asha", "hyperband", "mo_asha"):
            stop launching once the trials' ``budget_spent`` (in the rungs' budget
            units, e.g. steps) reaches this total.
          store_patience_s: seconds to wait for an unreachable store (a database
            restart, a dropped connection, SQLite locked) before the run stops with one
            line; running trials go on and finished results are held meanwhile.

        Returns:
          The experiment's `Result`, read from the store.
        """
        from memnas.result import Result
        from memnas.runner.driver import run_experiment

        run_experiment(self, max_trials=max_trials, workers=workers, executor=executor,
                       ray_address=ray_address, progress=progress, scheduler=scheduler,
                       batch=batch, max_cost=max_cost, store_patience_s=store_patience_s)
        return Result(self.name, self.store)

    def __repr__(self) -> str:
        return (f"Experiment(name={self.name!r}, algorithm={self.algorithm!r}, "
                f"objectives={self.objectives!r}, store={self.store!r})")



_NOT_USER = {"memnas", "pyglove", "torch", "ray", "numpy", "builtins"}


def _type_modules(value: Any, names: set) -> None:
    """Adds the module part of every ``_type`` in a PyGlove JSON value to ``names``."""
    if isinstance(value, dict):
        t = value.get("_type")
        if isinstance(t, str) and "." in t:
            names.add(t.rsplit(".", 1)[0])
        for v in value.values():
            _type_modules(v, names)
    elif isinstance(value, list):
        for v in value:
            _type_modules(v, names)


def _check_space(value: Any, where: str = "space") -> None:
    """Raises ConfigError naming the first value in a space that memnas cannot store
    and hash alike in every process: one PyGlove cannot serialise (an object that does
    not pickle), a set (its order changes between processes) and, among the choices of
    a decision, a lambda or a function or class defined inside another (no importable
    name: PyGlove would keep its bytecode, which changes with the file's lines) or two
    choices that serialise alike (memnas tells choices apart by their serialised form)."""
    if isinstance(value, pg.hyper.Choices):
        seen: dict[str, int] = {}
        for i, choice in enumerate(value.candidates):
            at = f"{where}[choice {i}]"
            if isinstance(choice, (types.FunctionType, type)) and "<" in choice.__qualname__:
                code = getattr(choice, "__code__", None)
                line = f", line {code.co_firstlineno}" if code else ""
                raise ConfigError(f"space value {choice.__module__}.{choice.__qualname__} "
                                  f"({type(choice).__name__}{line}) at {at} has no importable "
                                  f"name (a lambda, or defined inside a function): define it "
                                  f"at module level")
            _check_space(choice, at)
            key = _serialised(choice, at)
            if key in seen:
                raise ConfigError(f"space value {_shown(choice)} at {at} serialises like choice "
                                  f"{seen[key]}, so memnas cannot tell them apart: make them "
                                  f"symbolic (pg.Object, pg.symbolize) with different arguments")
            seen[key] = i
    elif isinstance(value, pg.Symbolic):
        for k, v in value.sym_items():
            _check_space(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}")
    elif isinstance(value, (dict, list, tuple)):
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            _check_space(v, f"{where}[{k!r}]")
    elif isinstance(value, (set, frozenset)):
        raise ConfigError(f"space value {_shown(value)} at {where} is a set, whose order (and "
                          f"so memnas's hash of it) changes between processes: use a sorted tuple")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        _serialised(value, where)


def _serialised(value: Any, at: str) -> str:
    """``value`` as memnas hashes it (see `memnas.hashing.canonical_json`)."""
    try:
        return json.dumps(pg.to_json(value), sort_keys=True, separators=(",", ":"), default=repr)
    except Exception as e:
        why = e.__cause__ or e
        raise ConfigError(f"space value {_shown(value)} at {at} ({type(value).__name__}) cannot "
                          f"be serialised: {type(why).__name__}: {_shown(str(why), False)}"
                          ) from None


def _shown(value: Any, as_repr: bool = True) -> str:
    """A value's repr (or a text) on one line of at most 100 characters."""
    try:
        text = " ".join((repr(value) if as_repr else str(value)).split())
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= 100 else text[:97] + "..."
