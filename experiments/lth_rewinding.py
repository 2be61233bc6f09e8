"""Late rewinding vs rewinding to initialisation on a deeper MLP at high sparsity (digits).

Frankle et al. ("Stabilizing the Lottery Ticket Hypothesis", 2019; "Linear Mode
Connectivity and the LTH", 2020) found that on deeper networks IMP tickets rewound to
iteration 0 lose accuracy at high sparsity, while rewinding to an early iteration k
("late rewinding") keeps them at dense accuracy. This script runs `LotteryTicketIMP`
(the same algorithm and evaluator a search uses, through `memnas.bench.lth.run_inline`)
on a five-layer MLP (64-256-256-256-128-10) with a higher learning rate, rewinding
to step 0 and to step k, plus re-initialised tickets as the floor, and prints test
accuracy (mean over seeds) per sparsity:

    python experiments/lth_rewinding.py              # 2 seeds, 12 rounds of 30% (a few minutes)
    python experiments/lth_rewinding.py --quick      # 1 seed, 4 rounds (< 1 min)

Importing it runs nothing; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

DEEP = dict(in_features=64, hidden=[256, 256, 256, 128], out_features=10)


def run(seeds: int = 2, rounds: int = 12, rate: float = 0.3, steps: int = 600,
        rewind_step: int = 60, lr: float = 3e-3) -> dict[str, Any]:
    """IMP with rewinding to 0 (with re-initialisation control) and to ``rewind_step``.

    Returns:
      ``rows``: ``{"sparsity", "rewind_0", "rewind_k", "reinit"}`` (test accuracy, mean
      over seeds), ``dense_acc`` and the settings.
    """
    import torch

    from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
    from memnas.bench.lth import run_inline, table
    from memnas.evaluators.sparse_training import SparseTrainEvaluator
    from memnas.searchspace.sparse import MLP

    torch.set_num_threads(1)
    space = lottery_space(MLP(**DEEP), rounds=rounds, rate=rate)
    evaluator = SparseTrainEvaluator(steps=steps, lr=lr)
    start = time.perf_counter()
    at0 = table(run_inline(LotteryTicketIMP(seed=0, chains=seeds, rounds=rounds, rate=rate,
                                            controls=["reinit"]), space, evaluator))
    atk = table(run_inline(LotteryTicketIMP(seed=0, chains=seeds, rounds=rounds, rate=rate,
                                            rewind_step=rewind_step), space, evaluator))
    rows = [{"sparsity": a["sparsity"], "rewind_0": a["imp"], "rewind_k": k["imp"],
             "reinit": a["reinit"]} for a, k in zip(at0, atk)]
    return {"rows": rows, "dense_acc": at0[0]["imp"], "seeds": seeds, "rounds": rounds,
            "rate": rate, "steps": steps, "rewind_step": rewind_step, "lr": lr,
            "wall_s": time.perf_counter() - start}


def main() -> None:
    """Command line: prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = run(seeds=1, rounds=4, steps=300, rewind_step=30) if args.quick else run()
    print(f"IMP on MLP {DEEP['in_features']}-{'-'.join(map(str, DEEP['hidden']))}-10, digits, "
          f"{out['steps']} Adam steps at lr {out['lr']}, {out['rate']:.0%} per round, "
          f"{out['seeds']} seeds, {out['wall_s']:.0f} s")
    print(f"  dense test accuracy {out['dense_acc']:.4f}")
    print(f"  remaining  rewind to 0  rewind to step {out['rewind_step']}  reinit")
    for r in out["rows"]:
        print(f"  {1 - r['sparsity']:.4f}     {r['rewind_0']:.4f}       {r['rewind_k']:.4f}"
              f"              {r['reinit']:.4f}")


if __name__ == "__main__":
    main()
