"""Dynamic pruning on digits: accuracy against the FLOPs actually saved (FTWT-style heads).

Fire Together Wire Together (Elkerdawy et al., CVPR 2022) predicts, per input, which
channels of each layer to compute with a light head trained from the layer's own top-k
activations. Here: an MLP 64-256-128-10 on scikit-learn's digits as a `DynamicSparse`
with the same keep ratio in both hidden layers and rank-8 heads, trained by
`DynamicTrainEvaluator` (Adam, task loss through the predicted masks plus the heads'
binary cross-entropy). At evaluation only the predicted units are computed; the FLOPs
spent per example are counted by torch's flop counter on that pass (heads included),
against the dense parent's pass. Keep 1.0 is the dense baseline (no heads). The
static control is a dense MLP as narrow as the units computed (hidden widths ``k_i``),
trained the same way: fewer FLOPs still (no heads), the same units for every input.

Prints, per keep ratio, test accuracy (mean and per seed), the FLOPs spent and saved,
the validation accuracy of the same weights computed densely, the heads' recall of
the true top-k units, and the static control's test accuracy and FLOPs:

    python experiments/dynamic_sparse_digits.py            # 5 keep ratios x 3 seeds (~3 min)
    python experiments/dynamic_sparse_digits.py --quick    # 3 keep ratios x 2 seeds, fewer steps

Importing it runs nothing; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

KEEPS = (1.0, 0.5, 0.25, 0.1, 0.05)
HIDDEN = [256, 128]


def run(keeps: tuple[float, ...] = KEEPS, seeds: int = 3, steps: int = 600,
        head_rank: int = 8) -> dict[str, Any]:
    """One row per keep ratio: ``keep``, ``test_accuracy`` (mean), ``test_accuracies`` (per
    seed), ``flops_spent``, ``flops_dense``, ``flops_saved``, ``dense_accuracy`` (validation,
    every unit computed), ``mask_recall``, ``static_accuracy`` and ``static_flops`` (a
    dense MLP of hidden widths ``k_i``; means over seeds)."""
    import torch

    from memnas.evaluators.dynamic_training import DynamicTrainEvaluator
    from memnas.measurement import Context
    from memnas.searchspace.dynamic_sparse import DynamicSparse
    from memnas.searchspace.sparse import MLP

    torch.set_num_threads(1)
    parent = MLP(in_features=64, hidden=HIDDEN, out_features=10)
    evaluator = DynamicTrainEvaluator(steps=steps)
    start = time.perf_counter()
    rows = []
    for keep in keeps:
        spec = DynamicSparse(parent=parent, keep=keep, head_rank=head_rank)
        runs = [evaluator(spec, Context(seed=s)) for s in range(seeds)]
        narrow = MLP(in_features=64, hidden=spec.kept(), out_features=10)
        static = [evaluator(narrow, Context(seed=s)) for s in range(seeds)]

        def mean(key: str, part: str = "costs") -> float:
            return statistics.mean(getattr(m, part)[key] for m in runs)

        rows.append({"keep": keep, "test_accuracy": mean("test_accuracy", "metrics"),
                     "test_accuracies": [m.metrics["test_accuracy"] for m in runs],
                     "flops_spent": mean("flops_spent"), "flops_dense": mean("flops_dense"),
                     "flops_saved": mean("flops_saved"),
                     "dense_accuracy": mean("dense_accuracy", "metrics"),
                     "mask_recall": mean("mask_recall", "metrics"),
                     "static_accuracy": statistics.mean(m.metrics["test_accuracy"]
                                                        for m in static),
                     "static_flops": static[0].costs["flops_spent"]})
    return {"rows": rows, "seeds": seeds, "steps": steps, "head_rank": head_rank,
            "wall_s": time.perf_counter() - start}


def main() -> None:
    """Command line: prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = run(keeps=(1.0, 0.5, 0.1), seeds=2, steps=300) if args.quick else run()
    print(f"Dynamic pruning, MLP 64-{'-'.join(map(str, HIDDEN))}-10 on digits, {out['steps']} "
          f"Adam steps, head rank {out['head_rank']}, {out['seeds']} seeds, "
          f"{out['wall_s']:.0f} s")
    print("keep  test_acc  [per seed]              flops_spent  flops_dense  flops_saved  "
          "dense_val_acc  mask_recall  static_acc  static_flops")
    for r in out["rows"]:
        seeds = " ".join(f"{a:.4f}" for a in r["test_accuracies"])
        print(f"{r['keep']:<5} {r['test_accuracy']:.4f}    [{seeds}]  {r['flops_spent']:>11.0f}"
              f"  {r['flops_dense']:>11.0f}  {r['flops_saved']:>11.3f}  "
              f"{r['dense_accuracy']:>13.4f}  {r['mask_recall']:>11.3f}  "
              f"{r['static_accuracy']:>10.4f}  {r['static_flops']:>12.0f}")


if __name__ == "__main__":
    main()
