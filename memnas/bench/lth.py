"""`memnas bench lth`: lottery tickets on digits vs random re-initialisation and random pruning."""

from __future__ import annotations

import time
from typing import Any


def run_inline(algorithm: Any, space: Any, evaluator: Any) -> list[tuple[dict[str, Any], Any]]:
    """Runs ``algorithm`` to exhaustion in this process, without a store or an executor.

    The same calls the driver makes (``propose``, ``artifact_for``, the evaluator,
    ``feedback_artifact``, ``feedback``), one trial at a time, so the figures equal a
    search through `memnas.Experiment` with the same algorithm options.

    Returns:
      ``(dna metadata, Measurement)`` per trial, in proposal order.
    """
    import pyglove as pg

    from memnas.measurement import Context

    algorithm.setup(pg.dna_spec(space))
    out = []
    while True:
        try:
            dna = algorithm.propose()
        except StopIteration:
            return out
        artifact = algorithm.artifact_for(dna)
        m = evaluator(pg.materialize(space, dna), Context(seed=len(out), artifact=artifact))
        algorithm.feedback_artifact(dna, m.artifact)
        algorithm.feedback(dna, m.metrics["accuracy"])
        out.append((dict(dna.metadata), m))


def table(trials: list[tuple[dict[str, Any], Any]], metric: str = "test_accuracy"
          ) -> list[dict[str, Any]]:
    """Rows ``{"round", "sparsity", "imp", "reinit", "random_prune"}`` averaged over chains.

    Round 0 is the dense network: its controls are the dense accuracy too.
    """
    import numpy as np

    by: dict[tuple[int, str], list[float]] = {}
    sparsity: dict[int, list[float]] = {}
    for meta, m in trials:
        by.setdefault((meta["round"], meta["role"]), []).append(m.metrics[metric])
        if meta["role"] == "imp":
            sparsity.setdefault(meta["round"], []).append(m.costs["sparsity"])
    rows = []
    for r in sorted(sparsity):
        imp = float(np.mean(by[(r, "imp")]))
        row = {"round": r, "sparsity": round(float(np.mean(sparsity[r])), 4), "imp": imp}
        for role in ("reinit", "random_prune"):
            vals = by.get((r, role))
            row[role] = float(np.mean(vals)) if vals else (imp if r == 0 else None)
        rows.append(row)
    return rows


def run(quick: bool = False, seeds: int | None = None, rounds: int | None = None,
        steps: int | None = None) -> dict[str, Any]:
    """LeNet-300-100 on scikit-learn digits: IMP tickets, re-initialised tickets, random pruning.

    Layer-wise IMP, 20% per round, output layer kept dense, rewinding to initialisation;
    each seed is one chain with both controls. Accuracies are test accuracies at the end
    of training, averaged over seeds. Target (Frankle & Carbin's shape): a ticket with at
    most 10% of the weights within 1 point of dense and 3 points above re-initialisation.

    Returns:
      ``dense_acc``, ``rows`` (``sparsity`` = fraction of the prunable weights removed),
      ``seeds``, ``target_met``, ``target_row`` and the settings.
    """
    import torch

    from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
    from memnas.evaluators.digits import Digits
    from memnas.evaluators.sparse_training import SparseTrainEvaluator
    from memnas.searchspace.sparse import MLP

    seeds = seeds or (1 if quick else 3)
    rounds = rounds or (3 if quick else 20)
    steps = steps or (100 if quick else 500)
    torch.set_num_threads(1)
    parent = MLP(in_features=64, hidden=[300, 100], out_features=10)
    space = lottery_space(parent, rounds=rounds, rate=0.2)
    evaluator = SparseTrainEvaluator(data=Digits(seed=0), steps=steps)
    algorithm = LotteryTicketIMP(seed=0, chains=seeds, rounds=rounds, rate=0.2,
                                 controls=["reinit", "random_prune"])
    start = time.perf_counter()
    trials = run_inline(algorithm, space, evaluator)
    rows = table(trials)
    dense = rows[0]["imp"]
    hits = [r for r in rows if r["sparsity"] >= 0.9 and r["imp"] >= dense - 0.01
            and r["reinit"] is not None and r["imp"] >= r["reinit"] + 0.03]
    out = {"dense_acc": dense, "rows": rows, "seeds": seeds, "rounds": rounds, "steps": steps,
           "trials": len(trials), "wall_s": time.perf_counter() - start,
           "target_met": bool(hits), "target_row": hits[-1] if hits else None}
    print(f"memnas bench lth: LeNet-300-100 on digits (1079/359/359 split), {steps} Adam steps, "
          f"layer-wise IMP 20%/round, rewind to init, {seeds} seeds, {len(trials)} trainings "
          f"in {out['wall_s']:.0f} s")
    print(f"  dense test accuracy {dense:.4f}")
    print("  sparsity  remaining   IMP     reinit  random_prune")
    for r in rows:
        f = ["  -   " if r[k] is None else f"{r[k]:.4f}" for k in ("imp", "reinit", "random_prune")]
        print(f"  {r['sparsity']:.4f}    {1 - r['sparsity']:.4f}    {f[0]}  {f[1]}  {f[2]}")
    t = out["target_row"]
    print("  target (<=10% weights, within 1 pt of dense, >=3 pts above reinit): " +
          (f"met at sparsity {t['sparsity']:.4f}" if t else "not met"))
    return out
