"""Lottery tickets inside memory models: IMP on attention, linear attention and DeltaNet (MQAR).

Iterative magnitude pruning (Frankle & Carbin 2019) has been run on MLPs; this asks
whether memory models hold lottery tickets for associative recall. For each mixer, a
two-layer model of `memnas.searchspace.memory_space` (width 32, 2 heads, MLP ratio 2,
learned positions) is pruned by `LotteryTicketIMP` through `memnas.Experiment` (the
real driver, in-process executor, a temporary SQLite store) on MQAR ``easy`` (vocabulary
64, 16 tokens, 4 key-value pairs): each round removes ``rate`` of the remaining weights
of every ``nn.Linear`` layer by trained magnitude (the mixers' projections, the channel
MLPs; the output head stays dense), rewinds the survivors to their initial values and
retrains (`memnas.evaluators.sparse_sequence.SparseSequenceEvaluator` over
`TrainEvaluator`). A random mask with the ticket's per-layer counts, from the same
initial weights, is the control at every sparsity. Each seed is one IMP chain.

Prints rows ``mixer, round, remaining_weights, accuracy`` (held-out answer accuracy, mean
over seeds, with each seed's) and the random-pruning control's accuracy:

    python experiments/imp_memory_mqar.py            # 3 mixers, 2 seeds, 5 rounds (~10 min)
    python experiments/imp_memory_mqar.py --quick    # 3 mixers, 1 seed, 3 rounds

``remaining_weights`` is the kept fraction of all prunable weights, the dense output
head included (it alone is 11% of them, so the floor is about 0.11).

Importing it runs nothing; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

MIXERS = ("SoftmaxAttention", "LinearAttention", "DeltaNet")


def memory_parent(mixer: str, vocab_size: int, seq_len: int, d_model: int = 32,
                  layers: int = 2, num_heads: int = 2) -> Any:
    """The one model of `memory_space` with ``layers`` blocks of ``mixer`` at width ``d_model``."""
    import pyglove as pg

    from memnas.searchspace import get_mixer, memory_space

    cls = get_mixer(mixer)
    spec = cls(num_heads=num_heads) if "num_heads" in cls.__schema__.fields else cls()
    space = memory_space(vocab_size, min_layers=layers, max_layers=layers, d_model=(d_model,),
                         mlp_ratio=(2,), mixers=[spec], max_len=seq_len)
    if isinstance(space, pg.hyper.HyperValue) or pg.dna_spec(space).decision_points:
        raise ValueError(f"memory_space over {mixer} still has decisions: {space!r:.200}")
    return space


def run(mixers: tuple[str, ...] = MIXERS, seeds: int = 2, rounds: int = 5, rate: float = 0.5,
        steps: int = 400, store: str | None = None) -> dict[str, Any]:
    """IMP chains with a random-pruning control for each mixer.

    Returns:
      ``rows``: ``{"mixer", "round", "remaining_weights", "accuracy", "accuracies",
      "random_prune"}`` (held-out accuracy, mean over seeds; ``accuracies`` per seed;
      ``random_prune`` None at round 0) and the settings.
    """
    import torch

    import memnas
    from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
    from memnas.evaluators import MQAR, TrainEvaluator
    from memnas.evaluators.sparse_sequence import SparseSequenceEvaluator

    torch.set_num_threads(1)
    task = MQAR.level("easy")
    evaluator = SparseSequenceEvaluator(TrainEvaluator(task=task, steps=steps, lr=3e-3))
    folder = tempfile.mkdtemp(prefix="memnas-imp-mqar-") if store is None else ""
    url = store or f"sqlite:///{os.path.join(folder, 'imp.db')}"
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    levels = [round(1 - (1 - rate) ** r, 6) for r in range(rounds)]
    for mixer in mixers:
        parent = memory_parent(mixer, task.vocab_size, task.seq_len)
        result = memnas.Experiment(
            name=f"imp-{mixer}", space=lottery_space(parent, rounds=rounds, rate=rate),
            evaluator=evaluator, objectives={"accuracy": "max", "remaining": "min"},
            algorithm=LotteryTicketIMP(seed=0, chains=seeds, rounds=rounds, rate=rate,
                                       controls=["random_prune"]),
            store=url).run(max_trials=seeds * (2 * rounds - 1), executor="local")
        df = result.trials()
        failed = df[df["status"] != "completed"]
        if len(failed):
            raise RuntimeError(f"{mixer}: {len(failed)} trial(s) failed: "
                               f"{failed['error'].iloc[0]}")
        by: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for _, t in df.iterrows():
            d = t["decisions"]
            rnd = min(range(rounds), key=lambda r: abs(levels[r] - float(d["sparsity"])))
            role = "random_prune" if d["criterion"] == "random" else "imp"
            by.setdefault((rnd, role), []).append((float(t["remaining"]), float(t["accuracy"])))
        for rnd in range(rounds):
            imp = by[(rnd, "imp")]
            control = by.get((rnd, "random_prune"))
            rows.append({"mixer": mixer, "round": rnd,
                         "remaining_weights": statistics.mean(r for r, _ in imp),
                         "accuracy": statistics.mean(a for _, a in imp),
                         "accuracies": [a for _, a in imp],
                         "random_prune": statistics.mean(a for _, a in control)
                         if control else None})
    return {"rows": rows, "seeds": seeds, "rounds": rounds, "rate": rate, "steps": steps,
            "task": task, "store": url, "wall_s": time.perf_counter() - start}


def main() -> None:
    """Command line: prints the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", default=None, help="SQLAlchemy URL (default: a temp SQLite)")
    args = parser.parse_args()
    out = run(seeds=1, rounds=3, store=args.store) if args.quick else run(store=args.store)
    t = out["task"]
    print(f"IMP on memory models, MQAR easy (vocab {t.vocab_size}, T={t.seq_len}, "
          f"{t.num_kv_pairs} pairs), 2 layers d=32, {out['steps']} AdamW steps, "
          f"{out['rate']:.0%} per round, rewind to init, {out['seeds']} seeds, "
          f"{out['wall_s']:.0f} s (store {out['store']})")
    print("mixer, round, remaining_weights, accuracy   [per seed]          random_prune")
    for r in out["rows"]:
        control = "-" if r["random_prune"] is None else f"{r['random_prune']:.3f}"
        seeds = " ".join(f"{a:.3f}" for a in r["accuracies"])
        print(f"{r['mixer']}, {r['round']}, {r['remaining_weights']:.3f}, {r['accuracy']:.3f}"
              f"   [{seeds}]   {control}")


if __name__ == "__main__":
    main()
