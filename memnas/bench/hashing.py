"""`memnas bench hashing`: cache hits by kind, savings beyond duplicates, hash time, false merges."""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import tempfile
import time
from typing import Any, Callable

TOLERANCE = 1e-6
"""Largest difference between a re-evaluated metric (or ``params``) and the reused one
that is no false merge. Training on CPU under a fixed seed with the same thread count is
deterministic, so a candidate equivalent to its source that builds the same parameters
in the same order (a canonical twin: cells build in canonical node order) reproduces its
result to the last bit; so did every true functional twin measured (an episodic memory
whose window covers the sequence against attention). A merge of candidates that only
start equal does not (mLSTM's sigmoid and exponential forget gates: 0.02 apart before
the cache hashed outputs after a step, `memnas.hashing.HASH_DEFAULTS`)."""
KINDS = ("duplicate", "canonical", "functional")


@dataclasses.dataclass
class Setup:
    """One space's run: the space, its evaluator and regularized evolution's sizes."""

    label: str
    space: Any
    evaluator: Any
    trials: int
    population: int = 20
    tournament: int = 5
    checks: int = 60  # non-duplicate hits re-evaluated, at most
    objectives: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"accuracy": "max", "params": "min"})


QUICK = {"trials": 6, "population": 3, "tournament": 2, "checks": 2}
"""The quick preset's sizes (a smoke test of seconds)."""


def _mqar(quick: bool) -> Any:
    """MQAR (4 key-value pairs in 16 tokens) trained 400 steps: enough for a small model
    to learn recall (at 120 steps every candidate stays near chance, 1/64)."""
    from memnas.evaluators import MQAR, TrainEvaluator

    return TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4),
                          steps=8 if quick else 400, eval_examples=64 if quick else 256)


def memory_setup(quick: bool) -> Setup:
    """The memory space (whole mixers), as `memnas bench hashing` always measured it."""
    from memnas.searchspace import memory_space

    space = memory_space(vocab_size=64, max_len=16, max_layers=2, d_model=(16, 32))
    return Setup("memory space (whole mixers), MQAR", space, _mqar(quick),
                 **(QUICK if quick else {"trials": 200}))


def cells_setup(quick: bool) -> Setup | str:
    """The memory-cell space (mixers composed from primitives); why not, if it is absent."""
    try:
        from memnas.searchspace import memory_cell_space
    except ImportError:
        return "memnas.searchspace.memory_cell_space is not there yet"
    space = memory_cell_space(vocab_size=64, max_len=16, max_layers=2, d_model=(16, 32))
    return Setup("memory-cell space (DAGs of primitives), MQAR", space, _mqar(quick),
                 **(QUICK if quick else {"trials": 400}))


SPACES: dict[str, Callable[[bool], Setup | str]] = {"cells": cells_setup, "memory": memory_setup}
"""The spaces measured, by the name their figures are written under: a function of
``quick`` giving the `Setup`, or a sentence saying why the space cannot be measured."""


def run(quick: bool = False, trials: int | None = None, seed: int = 0,
        spaces: Any = None, store_dir: str | None = None) -> dict[str, Any]:
    """Regularized evolution with the equivalence cache on each space of `SPACES`.

    Per space (``{name: figures}``): ``trials``; ``hits`` by kind (trials the cache
    answered, hits and attached alike, `memnas.hashing.match_kind`: ``duplicate`` the
    same candidate as the trial it reused or as an earlier trial, ``canonical`` the same
    canonical form, ``functional`` the same functional hash only; in a fresh store
    ``canonical + functional`` is ``saved_beyond_duplicates * trials``);
    ``saved_beyond_duplicates``: the fraction of trials answered by the cache whose
    candidate (its stored JSON) no earlier trial of the run proposed, i.e. what
    ``pg.geno.Deduping`` over the same proposals (keyed on the candidate, which catches at
    least what its default DNA key does) would still have evaluated;
    ``saved_beyond_duplicates_empty_cells``: the part of it whose candidate has an empty
    cell (one computing zeros, which NAS-Bench-101's sampler would have rejected);
    ``hash_time_fraction``: hashing seconds (the functional hashes and every proposal's
    canonical symbolic hash, as the driver timed them in the run; the candidate's JSON,
    which the trials table stores either way, is not counted) over evaluation seconds
    (the evaluated trials' wall time); ``checked``: non-duplicate hits
    re-evaluated (their candidate trained anew with the seed of the trial whose result they
    reused) and ``false_merges``: those whose metrics or ``params`` differ from the reused
    ones by more than `TOLERANCE`. Also ``wall_s``, ``evaluated``, ``attached``,
    ``max_difference``, the seconds behind the fraction (``hash_time_s``, its
    ``symbolic_hash_s`` and ``functional_hash_s``, ``evaluation_time_s``),
    ``functional_hashes`` and the ``space`` label. A space that cannot run is
    ``{"skipped": why}``.

    Args:
      quick: small runs (in-process, a few trials) for a smoke test.
      trials: trials per space (default: the space's `Setup`).
      seed: the search's seed.
      spaces: names of `SPACES` to run, or ``{name: setup function}`` (default: all).
      store_dir: keep each space's store there, as ``<name>.db`` (default: a temporary
        folder, removed after).
    """
    if isinstance(spaces, dict):
        chosen = dict(spaces)
    else:
        unknown = [n for n in spaces or () if n not in SPACES]
        if unknown:
            raise ValueError(f"unknown space {unknown[0]!r}; expected one of {sorted(SPACES)}")
        chosen = {n: SPACES[n] for n in (spaces or SPACES)}
    out: dict[str, Any] = {}
    for name, make in chosen.items():
        setup = make(quick)
        if isinstance(setup, str):
            out[name] = {"skipped": setup}
        else:
            setup.trials = trials or setup.trials
            out[name] = measure(name, setup, quick=quick, seed=seed, store_dir=store_dir)
    _report(out, quick, seed)
    return out


def measure(name: str, setup: Setup, quick: bool = False, seed: int = 0,
            store_dir: str | None = None) -> dict[str, Any]:
    """Runs one space's search in a fresh store (in ``store_dir``, else a temporary
    folder removed after) and measures it (figures as `run`'s)."""
    import memnas
    from memnas.store import Store

    with tempfile.TemporaryDirectory(prefix="memnas-bench-hashing-") as folder:
        if store_dir:
            os.makedirs(store_dir, exist_ok=True)
        path = os.path.join(store_dir or folder, f"{name}.db")
        if os.path.exists(path):
            raise FileExistsError(f"{path} exists: the bench runs in a fresh store")
        url = f"sqlite:///{path}"
        exp = memnas.Experiment(name=name, space=setup.space, evaluator=setup.evaluator,
                                algorithm="evolution", objectives=setup.objectives,
                                store=url, seed=seed, cache=True,
                                algorithm_options={"population_size": setup.population,
                                                   "tournament_size": setup.tournament})
        start = time.perf_counter()
        exp.run(max_trials=setup.trials, workers=2, executor="local" if quick else "ray")
        wall = time.perf_counter() - start
        store = Store(url, read_only=True)
        try:
            figures = _figures(store, store.experiment(name), setup, seed, quick)
        finally:
            store.close()
    return {"space": setup.label, **figures, "wall_s": wall}


def _figures(store: Any, row: dict[str, Any], setup: Setup, seed: int,
             quick: bool) -> dict[str, Any]:
    from memnas.store import cachekinds

    rows = sorted(store.trials(row["id"]), key=lambda t: t["number"])
    kinds = cachekinds.cache_kinds(store, row["id"])
    cached = [t for t in rows if t["status"] == "cached"]
    hits = collections.Counter(kinds[t["id"]][2] for t in cached)
    seen: set[str] = set()
    beyond = empty = 0
    for t in rows:  # in proposal order: what a dedup of the same proposals would evaluate
        saved = t["status"] == "cached" and t["candidate"] not in seen
        beyond += saved
        empty += saved and "cell(empty)" in (t["summary"] or "")
        seen.add(t["candidate"])
    evaluated = [t for t in rows if t["status"] == "completed"]
    eval_s = sum(t["wall_time"] or 0.0 for t in evaluated)
    stats = (row.get("config") or {}).get("hashing") or {}
    fn_s, sym_s = float(stats.get("hash_time_s", 0.0)), float(stats.get("symbolic_time_s", 0.0))
    checked, differences = check_merges(setup.evaluator, rows, kinds, setup.checks, seed,
                                        workers=1 if quick else 2)
    return {"trials": len(rows), "hits": {k: int(hits.get(k, 0)) for k in KINDS},
            **({"unknown": int(hits["unknown"])} if hits.get("unknown") else {}),
            "saved_beyond_duplicates": beyond / max(len(rows), 1),
            "saved_beyond_duplicates_empty_cells": empty / max(len(rows), 1),
            "hash_time_fraction": (fn_s + sym_s) / max(eval_s, 1e-9),
            "hash_time_s": fn_s + sym_s, "symbolic_hash_s": sym_s, "functional_hash_s": fn_s,
            "functional_hashes": int(stats.get("hashed", 0)), "evaluation_time_s": eval_s,
            "evaluated": len(evaluated),
            "attached": sum(kinds[t["id"]][1] == "attached" for t in cached),
            "checked": checked, "false_merges": sum(d > TOLERANCE for d in differences),
            "max_difference": max(differences, default=0.0)}


def check_merges(evaluator: Any, rows: list[dict[str, Any]], kinds: dict[int, tuple],
                 most: int, seed: int = 0, workers: int = 2) -> tuple[int, list[float]]:
    """Re-evaluates up to ``most`` non-duplicate cached trials (a seeded sample, in trial
    order): each candidate trained anew under the seed of the trial whose result it
    reused. Returns how many, and for each the largest absolute difference between the
    new and the reused metrics (and ``params`` cost); inf where one is missing."""
    import pyglove as pg

    by_id = {t["id"]: t for t in rows}
    merged = [t for t in rows if t["status"] == "cached" and t["cached_from"] in by_id
              and kinds.get(t["id"], ("", "", ""))[2] in ("canonical", "functional")]
    picked = sorted(random.Random(seed).sample(merged, min(most, len(merged))),
                    key=lambda t: t["number"])
    jobs = [(pg.from_json_str(t["candidate"]), int(by_id[t["cached_from"]]["seed"]))
            for t in picked]
    again = _evaluate_all(evaluator, jobs, workers)
    return len(picked), [_difference(t, m) for t, m in zip(picked, again)]


def _difference(trial: dict[str, Any], again: Any) -> float:
    reused = {**trial["metrics"], "params": (trial["costs"] or {}).get("params")}
    new = {**again.metrics, "params": again.costs.get("params")}
    worst = 0.0
    for k, v in reused.items():
        if v is None and k == "params":
            continue
        w = new.get(k)
        if not isinstance(w, (int, float)) or not isinstance(v, (int, float)):
            return float("inf")
        worst = max(worst, abs(float(w) - float(v)))
    return worst


def _evaluate(evaluator: Any, candidate: Any, seed: int) -> Any:
    from memnas.measurement import Context, Measurement

    return Measurement.coerce(evaluator(candidate, Context(seed=seed)))


def _evaluate_all(evaluator: Any, jobs: list[tuple[Any, int]], workers: int) -> list[Any]:
    """``evaluator(candidate, Context(seed))`` for each job, in ``workers`` processes."""
    if workers <= 1 or len(jobs) <= 1:
        return [_evaluate(evaluator, c, s) for c, s in jobs]
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_evaluate, [evaluator] * len(jobs), *zip(*jobs)))


def _report(out: dict[str, Any], quick: bool, seed: int) -> None:
    print(f"memnas bench hashing: regularized evolution with the equivalence cache, seed {seed}"
          f"{' (quick)' if quick else ''}")
    for name, f in out.items():
        if "skipped" in f:
            print(f"  {name}: skipped: {f['skipped']}")
            continue
        h = f["hits"]
        print(f"  {name}: {f['space']}, {f['trials']} trials, {f['evaluated']} evaluated, "
              f"{f['wall_s']:.0f} s")
        print(f"    answered by the cache: {h['duplicate']} duplicate, {h['canonical']} "
              f"canonical, {h['functional']} functional ({f['attached']} of them attached "
              "to a running twin)")
        print(f"    saved beyond duplicates (what pg.geno.Deduping would have evaluated): "
              f"{f['saved_beyond_duplicates']:.1%} of trials"
              + (f", {f['saved_beyond_duplicates_empty_cells']:.1%} with an empty cell (one that "
                 "computes zeros: over its edge cap or its output unreachable)"
                 if f.get("saved_beyond_duplicates_empty_cells") else ""))
        print(f"    hashing: {f['hash_time_s']:.2f} s ({f['symbolic_hash_s']:.2f} s canonical "
              f"symbolic hashes of {f['trials']} proposals, {f['functional_hash_s']:.2f} s for "
              f"{f['functional_hashes']} functional hashes) = {f['hash_time_fraction']:.2%} of "
              f"{f['evaluation_time_s']:.1f} s of evaluation")
        print(f"    false merges: {f['false_merges']} of {f['checked']} non-duplicate hits "
              f"re-evaluated with their source's seed (largest difference "
              f"{f['max_difference']:.3g}, tolerance {TOLERANCE:g})")
