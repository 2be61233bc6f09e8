"""`memnas bench efficiency`: compute, evaluations and warm starts through the real driver.

Every search here is a memnas `Experiment` run by the driver (``executor="local"``, one
trial at a time; Ray Tune for ``tune_asha``) on the shipped tabular benchmark v2
(`memnas.tabular.v2`, 544 architectures, budgets 50/100/200/400 steps) into a SQLite store
in a temporary folder, its trials read back with `memnas.store.Store`. A run is driven
in chunks (the experiment continued with a larger ``max_trials``) until its target is
reached or it holds ``cap`` trials; figures count only the trials up to the target.

Three comparisons, each a median over seeds with quartiles and a PNG:

- ``compute_to_top1pct``: simulated training seconds (the sum of the trials'
  ``simulated_time_spent``; a rung that resumes its parent's checkpoint pays only the
  steps it adds; a Tune trial its scheduler stopped pays the time of the last budget it
  reported) until the first trial at the full budget (400 steps) whose architecture is
  in the table's top 1% (`memnas.tabular.table.Table.top_threshold`, the full-run
  accuracy averaged over the table's seeds).
- ``evals_to_nsga2_hv200``: full evaluations (trials at 400 steps) until the hypervolume
  of (accuracy max, ``state_bytes`` min) over those reaches the median NSGA-II reaches
  after 200; reference point: the table's worst accuracy and largest ``state_bytes``.
- ``warm_start_evals_ratio``: evaluations of an evolution warm-started from a finished
  100-trial random search until the top 1%, over those of a cold evolution (medians).

The equivalence cache is off (``cache=False``) in every run: an architecture proposed
again is trained and paid for again, as in a user's run without a shared store, so
methods that re-propose are not favoured. A run that never reaches its target counts
as its cap (its compute or evaluations at the cap) and is listed under ``unreached``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

FULL = 400
"""The full budget (steps): the table's last."""

FIDELITY = {"min_budget": 50, "max_budget": FULL, "eta": 2}
"""Rungs of the multi-fidelity methods (50, 100, 200, 400 steps: the table's budgets)."""

EVOLUTION = {"population_size": 10, "tournament_size": 3}
"""Regularized evolution sized for a space of a few hundred points (as `bench algorithms`)."""

SINGLE = ("random", "asha", "asha_from100", "tune_asha", "evolution", "sh_evolution")
MULTI = ("nsga2", "linas", "mo_asha")
MO_OBJECTIVES = {"accuracy": "max", "state_bytes": "min"}
SLOW = ("sh_evolution", "linas", "mo_asha")
"""Methods run with ``slow_seeds``: sh_evolution and mo_asha often run to the cap,
linas proposes in ~0.4 s."""
LINAS_CAP = 300
"""Most trials of a linas run (each costs ~0.4 s of proposal time)."""
NSGA2_EVALS = 200
WARM_SOURCE_TRIALS = 100


def _single_setup(method: str) -> dict[str, Any]:
    """Experiment arguments of a single-objective method."""
    fid = {"algorithm": "asha", "algorithm_options": dict(FIDELITY)}
    return {"random": {"algorithm": "random", "budget": {"steps": FULL}},
            "tune_asha": {"algorithm": "random", "budget": {"steps": FULL}},
            "evolution": {"algorithm": "evolution", "budget": {"steps": FULL},
                          "algorithm_options": dict(EVOLUTION)},
            "asha": fid,
            # The lowest rung where the table's ranking starts to tell (Spearman with the
            # 400-step accuracy: 0.36 at 50 steps, 0.79 at 100): a user's choice of
            # min_budget, shown beside the default rungs, not instead of them.
            "asha_from100": {"algorithm": "asha",
                             "algorithm_options": {**FIDELITY, "min_budget": 100}},
            "sh_evolution": {"algorithm": "asha", "algorithm_options": {
                **FIDELITY, "proposer": "evolution", "proposer_options": dict(EVOLUTION)}},
            }[method]


def _multi_setup(method: str) -> dict[str, Any]:
    """Experiment arguments of a multi-objective method."""
    if method == "mo_asha":
        return {"algorithm": "mo_asha", "algorithm_options": dict(FIDELITY),
                "objectives": dict(MO_OBJECTIVES)}
    return {"algorithm": method, "budget": {"steps": FULL}, "objectives": dict(MO_OBJECTIVES)}


def tune_scheduler() -> Any:
    """Ray Tune's ASHA on the reported steps, with memnas ASHA's rungs (50..400, eta 2)."""
    from ray.tune.schedulers import ASHAScheduler

    from memnas.runner.tune.trainable import STEP

    return ASHAScheduler(time_attr=STEP, metric="accuracy", mode="max",
                         grace_period=FIDELITY["min_budget"], max_t=FULL,
                         reduction_factor=FIDELITY["eta"])


class Bench:
    """The table, its space and evaluator, and the reading of stored trials.

    Args:
      folder: where the SQLite stores go.
    """

    def __init__(self, folder: str) -> None:
        import pyglove as pg

        from memnas.tabular.table import TabularEvaluator, load_table
        from memnas.tabular.v2 import TABLE_V2_PATH, tabular_space_v2

        self.folder = folder
        self.table = load_table(TABLE_V2_PATH)
        self.space = tabular_space_v2()
        self.evaluator = TabularEvaluator(path=TABLE_V2_PATH)
        self.threshold = self.table.top_threshold(0.01)
        self.top = sum(a >= self.threshold for a in self.table.accuracies().values())
        sb = [float(r["state_bytes"]) for r in self.table.rows.values()]
        self.reference = (min(self.table.accuracies().values()), max(sb))
        self._keys: dict[str, str] = {}
        self._pg = pg

    def url(self, store: str) -> str:
        """SQLAlchemy URL of store ``store`` in the folder."""
        return f"sqlite:///{os.path.join(self.folder, store + '.db')}"

    def records(self, store: str, name: str) -> list[dict[str, Any]]:
        """The experiment's finished trials in order: ``steps`` reached, ``spent``
        (simulated seconds), table ``key``, full-budget ``accuracy`` and ``state_bytes``."""
        from memnas.store import Store

        s = Store(self.url(store), read_only=True)
        try:
            exp = s.require_experiment(name)
            trials = sorted(s.trials(exp["id"]), key=lambda t: t["number"])
        finally:
            s.close()
        out = []
        for t in trials:
            if t["status"] not in ("completed", "cached"):
                continue
            key = self._key(t["candidate"])
            costs, metrics = t["costs"] or {}, t["metrics"] or {}
            steps = int((t["budget"] or {}).get("steps", FULL))
            if metrics.get("stopped_early"):        # Tune stopped it at its last report
                steps = int(costs["budget_spent"])
                spent = self.evaluator.lookup(key, budget=steps).costs["simulated_time"]
            else:
                spent = float(costs.get("simulated_time_spent", 0.0)) \
                    if t["status"] == "completed" else 0.0
            out.append({"steps": steps, "spent": spent, "key": key,
                        "accuracy": self.table.accuracy(key),
                        "state_bytes": float(self.table.rows[key]["state_bytes"])})
        return out

    def _key(self, candidate: str) -> str:
        if candidate not in self._keys:
            self._keys[candidate] = self.table.key_of(self._pg.from_json_str(candidate))
        return self._keys[candidate]

    def search(self, store: str, name: str, setup: dict[str, Any], seed: int, cap: int,
               done: Callable[[list[dict[str, Any]]], bool], chunk: int = 50,
               tune: bool = False, warm_start: Sequence[str] | None = None
               ) -> list[dict[str, Any]]:
        """Runs experiment ``name`` in chunks until ``done(records)`` or ``cap`` trials."""
        import memnas

        exp = memnas.Experiment(name, self.space, self.evaluator, store=self.url(store),
                                seed=seed, cache=False, warm_start=warm_start, **setup)
        n = min(chunk, cap)
        while True:
            if tune:
                exp.run(max_trials=n, executor="tune", scheduler=tune_scheduler())
            else:
                exp.run(max_trials=n, executor="local")
            recs = self.records(store, name)
            if done(recs) or n >= cap:
                return recs
            n = min(cap, 2 * n)

    def hit(self, recs: list[dict[str, Any]]) -> int | None:
        """Index of the first full-budget trial in the top 1%, or None."""
        return next((i for i, r in enumerate(recs)
                     if r["steps"] >= FULL and r["accuracy"] >= self.threshold), None)

    def hv_curve(self, recs: list[dict[str, Any]]) -> list[float]:
        """Hypervolume after each full evaluation (trials at 400 steps)."""
        from memnas.pareto import hypervolume_2d

        pts = [(r["accuracy"], r["state_bytes"]) for r in recs if r["steps"] >= FULL]
        return [hypervolume_2d(np.array(pts[:k]), ("max", "min"), self.reference)
                for k in range(1, len(pts) + 1)]


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """``{"q25", "median", "q75"}`` of ``values`` (inclusive quartiles)."""
    v = sorted(float(x) for x in values)
    if len(v) == 1:
        return {"q25": v[0], "median": v[0], "q75": v[0]}
    q25, med, q75 = statistics.quantiles(v, n=4, method="inclusive")
    return {"q25": q25, "median": med, "q75": q75}


def _single(b: Bench, method: str, seeds: int, cap: int) -> dict[str, Any]:
    """Compute (and trials) to the top 1% of ``seeds`` runs of ``method``."""
    tune = method == "tune_asha"
    out: dict[str, Any] = {"compute": [], "trials": [], "full_evals": [], "reached": []}
    for seed in range(seeds):
        recs = b.search(method, f"{method}-{seed}", _single_setup(method), seed, cap,
                        lambda r: b.hit(r) is not None, tune=tune)
        i = b.hit(recs)
        upto = recs if i is None else recs[:i + 1]
        out["compute"].append(round(sum(r["spent"] for r in upto), 3))
        out["trials"].append(len(upto))
        out["full_evals"].append(sum(r["steps"] >= FULL for r in upto))
        out["reached"].append(i is not None)
    return out


def _multi(b: Bench, method: str, seeds: int, cap: int, target: float | None,
           nsga2_evals: int = NSGA2_EVALS) -> dict[str, Any]:
    """Hypervolume curves over full evaluations; evaluations to ``target`` when given."""
    out: dict[str, Any] = {"curves": [], "evals": [], "reached": []}
    for seed in range(seeds):
        def done(recs: list[dict[str, Any]]) -> bool:
            if target is None:
                return sum(r["steps"] >= FULL for r in recs) >= nsga2_evals
            curve = b.hv_curve(recs)
            return bool(curve) and curve[-1] >= target
        recs = b.search(method, f"{method}-{seed}", _multi_setup(method), seed, cap, done)
        curve = b.hv_curve(recs)
        if target is None:
            curve = curve[:nsga2_evals]
        out["curves"].append([round(h, 4) for h in curve])
        k = next((i + 1 for i, h in enumerate(curve) if target is not None and h >= target), None)
        out["evals"].append(k if k is not None else len(curve))
        out["reached"].append(k is not None)
    return out


def _warm(b: Bench, seeds: int, cap: int) -> dict[str, Any]:
    """Evaluations to the top 1% of evolution warm-started from a 100-trial random search."""
    out: dict[str, Any] = {"evals": [], "reached": []}
    for seed in range(seeds):
        src = f"warm-source-{seed}"
        b.search("warm", src, _single_setup("random"), 1000 + seed, WARM_SOURCE_TRIALS,
                 lambda r: False, chunk=WARM_SOURCE_TRIALS)
        recs = b.search("warm", f"warm-evolution-{seed}", _single_setup("evolution"), seed,
                        cap, lambda r: b.hit(r) is not None, warm_start=[src])
        i = b.hit(recs)
        out["evals"].append(len(recs) if i is None else i + 1)
        out["reached"].append(i is not None)
    return out


def run(quick: bool = False, seeds: int | None = None, png_dir: str = "docs",
        tune_seeds: int | None = None, slow_seeds: int | None = None, cap: int = 600,
        nsga2_evals: int = NSGA2_EVALS,
        methods: Sequence[str] = SINGLE + MULTI + ("warm_start",)) -> dict[str, Any]:
    """Runs the three comparisons; prints a table and returns the figures.

    Args:
      quick: 3 seeds and smaller caps (a smoke test of a couple of minutes).
      seeds: runs per method (default 20; 3 with ``quick``).
      png_dir: folder of the PNGs (created).
      tune_seeds: runs of ``tune_asha`` (default ``seeds``; fewer to save time: Ray Tune
        costs 0.2-1.5 s a trial, 7 min for 20 runs).
      slow_seeds: runs of each of `SLOW` (default ``seeds``; fewer to save time: they run
        to their cap or cost ~0.4 s a trial (linas: 17 min for 20 runs)).
      cap: most trials of one run (a multi-fidelity run counts every rung).
      nsga2_evals: NSGA-II's evaluations that set the hypervolume target (200; fewer
        only for tests).
      methods: which of ``SINGLE + MULTI + ("warm_start",)`` to run.

    Returns:
      ``seeds``, ``compute_to_top1pct`` (medians), ``evals_to_nsga2_hv200`` (medians),
      ``warm_start_evals_ratio``, and under ``details`` quartiles, per-seed values,
      seeds per method, runs that never reached their target (counted at the cap),
      wall time per method; ``png`` the files written, ``wall_s`` the total.
    """
    from memnas.bench._efficiency_report import plot_all, report

    start = time.perf_counter()
    n = seeds or (3 if quick else 20)
    cap = min(cap, 200) if quick else cap
    per = {m: n for m in methods}
    if "tune_asha" in per:
        per["tune_asha"] = tune_seeds or n
    for m in SLOW:
        if m in per:
            per[m] = slow_seeds or n
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    out: dict[str, Any] = {"seeds": n, "compute_to_top1pct": {}, "evals_to_nsga2_hv200": {},
                           "warm_start_evals_ratio": None, "skipped": {}, "png": []}
    det: dict[str, Any] = {"seeds_per_method": per, "cap_trials": cap, "wall_s": {},
                           "per_seed": {}, "quartiles": {}, "unreached": {}}
    with tempfile.TemporaryDirectory(prefix="memnas-eff-", dir=base) as folder:
        b = Bench(folder)
        det.update(threshold=b.threshold, top_architectures=b.top, reference=b.reference)
        ray_up = _start_ray() if "tune_asha" in methods else False
        try:
            for m in (x for x in SINGLE if x in methods):
                t0 = time.perf_counter()
                r = _single(b, m, per[m], cap)
                det["wall_s"][m] = round(time.perf_counter() - t0, 1)
                out["compute_to_top1pct"][m] = quartiles(r["compute"])["median"]
                det["quartiles"].setdefault("compute_to_top1pct", {})[m] = quartiles(r["compute"])
                det["per_seed"].setdefault("compute_to_top1pct", {})[m] = r
                det["unreached"][m] = r["reached"].count(False)
                print(f"  {m}: {per[m]} runs in {det['wall_s'][m]} s", flush=True)
        finally:
            if ray_up:
                from memnas.runner.executors import stop_ray

                stop_ray()
        target = None
        for m in (x for x in MULTI if x in methods):
            if m == "linas" and not _linas_available():
                out["skipped"][m] = "memnas.algorithms has no 'linas' registered yet"
                print(f"  linas: skipped ({out['skipped'][m]})", flush=True)
                continue
            if m != "nsga2" and target is None:
                out["skipped"][m] = "needs nsga2's hypervolume target (nsga2 not run)"
                continue
            t0 = time.perf_counter()
            limit = {"nsga2": max(cap, 2 * nsga2_evals), "linas": min(cap, LINAS_CAP)}
            r = _multi(b, m, per[m], limit.get(m, cap), target, nsga2_evals)
            det["wall_s"][m] = round(time.perf_counter() - t0, 1)
            if m == "nsga2":
                hv200 = [c[-1] for c in r["curves"]]
                target = quartiles(hv200)["median"]
                det["nsga2_hv200"] = quartiles(hv200)
                r["evals"] = [nsga2_evals] * len(hv200)
                r["reached"] = [len(c) >= nsga2_evals for c in r["curves"]]
            out["evals_to_nsga2_hv200"][m] = nsga2_evals if m == "nsga2" \
                else quartiles(r["evals"])["median"]
            det["quartiles"].setdefault("evals_to_nsga2_hv200", {})[m] = quartiles(r["evals"])
            det["per_seed"].setdefault("evals_to_nsga2_hv200", {})[m] = r
            det["unreached"][m] = r["reached"].count(False)
            print(f"  {m}: {per[m]} runs in {det['wall_s'][m]} s", flush=True)
        if "warm_start" in methods and "evolution" in methods:
            t0 = time.perf_counter()
            r = _warm(b, n, cap)
            det["wall_s"]["warm_start"] = round(time.perf_counter() - t0, 1)
            cold = det["per_seed"]["compute_to_top1pct"]["evolution"]["trials"]
            out["warm_start_evals_ratio"] = quartiles(r["evals"])["median"] / \
                quartiles(cold)["median"]
            det["quartiles"]["warm_start_evals"] = {"warm": quartiles(r["evals"]),
                                                    "cold": quartiles(cold)}
            det["per_seed"]["warm_start_evals"] = {"warm": r, "cold": cold}
            det["unreached"]["warm_start"] = r["reached"].count(False)
            print(f"  warm_start: {n} runs in {det['wall_s']['warm_start']} s", flush=True)
    out["details"] = det
    out["png"] = plot_all(out, b, png_dir)
    out["wall_s"] = round(time.perf_counter() - start, 1)
    report(out)
    return out


def _linas_available() -> bool:
    try:
        from memnas.algorithms import ALGORITHMS

        return "linas" in ALGORITHMS
    except Exception:
        return False


def _start_ray() -> bool:
    """Starts one local Ray (2 CPUs) for all Tune runs, unless Ray is up: the driver
    would start and stop one per run. True when started here (to stop)."""
    from memnas.runner.executors import start_ray

    return start_ray(None, 2)
