"""Random search over the node space vs random subnetworks at the same sparsity (digits).

Farahani (2024, "Random Search as a Baseline for Sparse Neural Network Architecture
Search", https://arxiv.org/abs/2403.08265) searches which units of an initialised
over-parameterised network survive and finds that the best sparse networks random
search picks train no better than random sparse networks of the same sparsity. Here:
LeNet-300-100 on digits, one fixed initialisation and data order; hidden layers split
into 10 unit groups; for each number of surviving groups, memnas random search
(the real driver, a temporary SQLite store) samples node configurations, and the one
with the best validation accuracy is compared on test accuracy with

- the sampled node configurations themselves (mean: a random node configuration),
- unstructured random subnetworks with the same number of weights in each layer,
- the best configuration retrained from other initialisations (is it the
  architecture or the lucky initial weights?).

    python experiments/sparse_node_search.py            # 3 levels x 16 trials (several minutes)
    python experiments/sparse_node_search.py --quick    # 1 level x 6 trials

Importing it runs nothing; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

GROUPS = 10


def run(keeps: tuple[int, ...] = (1, 2, 4), trials: int = 16, steps: int = 500,
        reseeds: int = 3) -> dict[str, Any]:
    """Rows per surviving-group count: ``remaining``, ``rs_best``, ``rs_mean``, ``rs_std``,
    ``unstructured``, ``best_reseeded``, ``random_reseeded`` (test accuracies)."""
    import torch

    import memnas
    from memnas.algorithms.lottery import random_masks_like
    from memnas.evaluators.sparse_training import SparseTrainEvaluator
    from memnas.measurement import Context
    from memnas.searchspace.sparse import MLP, node_space

    torch.set_num_threads(1)
    parent = MLP(in_features=64, hidden=[300, 100], out_features=10)
    evaluator = SparseTrainEvaluator(steps=steps, init_seed=0, data_seed=0, return_weights=True)
    folder = tempfile.mkdtemp(prefix="memnas-node-search-")
    url = f"sqlite:///{os.path.join(folder, 'nodes.db')}"
    start = time.perf_counter()
    rows = []
    for keep in keeps:
        space = node_space(parent, keep=keep, groups=GROUPS)
        result = memnas.Experiment(
            name=f"nodes-{keep}", space=space, evaluator=evaluator, algorithm="random",
            objectives={"accuracy": "max", "remaining": "min"}, store=url, seed=keep,
            cache=False).run(max_trials=trials, executor="local")
        df = result.trials()
        best = df.loc[df["accuracy"].idxmax()]
        masks = result.artifact(int(best["number"]))["masks"]
        weights = {k: v for k, v in masks.items() if v.ndim >= 2}  # no unit (bias) masks
        unstructured = [evaluator(parent, Context(artifact={"masks": random_masks_like(
            weights, s)})).metrics["test_accuracy"] for s in range(reseeds)]
        worst = result.artifact(int(df.loc[df["accuracy"].idxmin(), "number"]))["masks"]
        reseeded = [evaluator(parent, Context(artifact={"masks": masks, "init_seed": 100 + s}))
                    .metrics["test_accuracy"] for s in range(reseeds)]
        worst_reseeded = [evaluator(parent, Context(artifact={"masks": worst,
                                                              "init_seed": 100 + s}))
                          .metrics["test_accuracy"] for s in range(reseeds)]
        rows.append({
            "keep_groups": keep, "remaining": float(best["remaining"]),
            "rs_best": float(best["test_accuracy"]), "rs_best_val": float(best["accuracy"]),
            "rs_mean": float(df["test_accuracy"].mean()),
            "rs_std": float(df["test_accuracy"].std()),
            "unstructured": statistics.mean(unstructured),
            "best_reseeded": statistics.mean(reseeded),
            "worst_reseeded": statistics.mean(worst_reseeded)})
    return {"rows": rows, "trials": trials, "steps": steps, "reseeds": reseeds,
            "dense_acc": evaluator(parent, Context()).metrics["test_accuracy"],
            "wall_s": time.perf_counter() - start}


def main() -> None:
    """Command line: prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = run(keeps=(4,), trials=6, steps=300, reseeds=2) if args.quick else run()
    print(f"Node-space random search, LeNet-300-100 on digits, {GROUPS} unit groups per hidden "
          f"layer, {out['trials']} trials per level, {out['steps']} steps, {out['wall_s']:.0f} s")
    print(f"  dense test accuracy {out['dense_acc']:.4f}")
    print("  groups  remaining  RS best (val-picked)  RS mean +- std    unstructured  "
          f"best / worst config, {out['reseeds']} new inits")
    for r in out["rows"]:
        print(f"  {r['keep_groups']:>2}/{GROUPS}   {r['remaining']:.4f}     {r['rs_best']:.4f}"
              f"                {r['rs_mean']:.4f} +- {r['rs_std']:.4f}  {r['unstructured']:.4f}"
              f"        {r['best_reseeded']:.4f} / {r['worst_reseeded']:.4f}")


if __name__ == "__main__":
    main()
