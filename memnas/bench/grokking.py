"""`memnas bench grokking`: grokking tickets vs the dense network and random pruning."""

from __future__ import annotations

import math
import os
import time
from typing import Any

NOT_REACHED = "not reached"
ROLES = ("dense", "ticket", "random_prune")
_COLORS = {"dense": "tab:gray", "ticket": "tab:red", "random_prune": "tab:blue"}

FULL = dict(p=97, op="+", train_fraction=0.4, embed=128, hidden=64, lr=3e-3, weight_decay=1.0,
            steps=5000, steps_after_target=500, report_every=50, sparsity=0.5, seeds=8)
QUICK = dict(p=31, op="+", train_fraction=0.8, embed=32, hidden=32, lr=1e-2, weight_decay=1.0,
             steps=400, steps_after_target=50, report_every=25, sparsity=0.5, seeds=3)


def run(quick: bool = False, seeds: int | None = None, png_dir: str | None = None,
        sparsity: float | None = None, steps: int | None = None) -> dict[str, Any]:
    """Steps to 95% held-out accuracy on ``(a + b) mod 97``: dense, grokking ticket, random mask.

    `LotteryTicketIMP` (``imp``) with one pruning round per seed (chain): the dense
    `ModularMLP` trains until it groks (and ``steps_after_target`` further steps);
    ``sparsity`` of its embedding and hidden weights is pruned by trained magnitude,
    layer by layer (the output layer kept dense, IMP's default); the survivors are
    rewound to their initial values (``rewind_step=0``) and trained again (the ticket).
    The control ``random_prune`` trains a random mask with the ticket's per-layer counts
    from the same initial weights. Every run uses the same `ModularTrainEvaluator`
    (full-batch AdamW, lr 3e-3, weight decay 1, step cap ``steps``). Runs are
    deterministic on one CPU thread; the full run takes about 7 CPU-minutes.

    Args:
      quick: A tiny version (p = 31, 80% trained, 400 steps) for tests.
      seeds: IMP chains (8 by default; 3 when quick).
      png_dir: Folder of the curves' PNG (``grokking.png``; ``grokking-quick.png`` when
        quick); default ``docs``.
      sparsity: Fraction of the embedding and hidden weights pruned (0.5).
      steps: Step cap of every run.

    Returns:
      ``seeds``, ``steps_to_95`` (median over seeds per role, or ``"not reached"`` when
      at least half the seeds did not reach 95% within the cap), ``per_seed`` (each
      seed's steps, ``"not reached"`` for a run that did not), ``mean_steps_to_95``
      (``"not reached"`` if any seed did not), ``reached`` (seeds that did),
      ``ticket_sooner_than`` (seeds where the ticket got there before the dense network,
      before random pruning), ``train_steps_to_95`` (medians, training accuracy),
      ``sparsity`` (measured, embedding and hidden layers), ``remaining`` (kept fraction
      of all three layers' weights), ``ticket_sooner`` (per seed: the ticket reached
      95% before both controls), ``ticket_sooner_than_both`` (the medians say so),
      ``settings``, ``png`` and ``wall_s``.
    """
    import torch

    from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
    from memnas.bench.lth import run_inline
    from memnas.evaluators.modular import ModularArithmetic, ModularMLP, ModularTrainEvaluator

    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(seeds=seeds, sparsity=sparsity, steps=steps).items()
                if v is not None})
    torch.set_num_threads(1)
    task = ModularArithmetic(p=cfg["p"], op=cfg["op"], train_fraction=cfg["train_fraction"])
    parent = ModularMLP(p=cfg["p"], embed=cfg["embed"], hidden=cfg["hidden"])
    evaluator = ModularTrainEvaluator(
        task=task, steps=cfg["steps"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
        report_every=cfg["report_every"], target=0.95,
        steps_after_target=cfg["steps_after_target"])
    algorithm = LotteryTicketIMP(seed=0, chains=cfg["seeds"], rounds=2, rate=cfg["sparsity"],
                                 scope="layer", rewind_step=0, controls=["random_prune"])
    start = time.perf_counter()
    trials = run_inline(algorithm, lottery_space(parent, rounds=2, rate=cfg["sparsity"]),
                        evaluator)
    out = summarize(trials, cfg["seeds"])
    out.update(settings={**cfg, "parent": parent.summary(), "task": f"(a {task.op} b) mod "
                         f"{task.p}, {task.train_fraction:.0%} of the pairs trained",
                         "optimizer": "AdamW full batch, betas (0.9, 0.98)",
                         "pruning": "one IMP round, layer-wise magnitude, output layer dense, "
                                    "rewind to step 0"},
               step_cap=cfg["steps"], wall_s=round(time.perf_counter() - start, 1))
    folder = png_dir or "docs"
    out["png"] = plot(out["curves"], os.path.join(
        folder, "grokking-quick.png" if quick else "grokking.png"), out)
    report(out)
    return out


def summarize(trials: list[tuple[dict[str, Any], Any]], seeds: int) -> dict[str, Any]:
    """The figures of `run` from IMP's trials ``(dna metadata, Measurement)``."""
    import numpy as np

    roles = {("imp", 0): "dense", ("imp", 1): "ticket", ("random_prune", 1): "random_prune"}
    per: dict[str, list[Any]] = {r: [None] * seeds for r in ROLES}
    train: dict[str, list[Any]] = {r: [None] * seeds for r in ROLES}
    curves: dict[str, list[dict[str, list[float]]]] = {r: [{}] * seeds for r in ROLES}
    sparsity, remaining = [], []
    for meta, m in trials:
        role = roles.get((meta["role"], meta["round"]))
        if role is None:
            continue
        chain = meta["chain"]
        per[role][chain] = int(m.metrics["steps_to_target"]) if m.metrics["reached_target"] \
            else NOT_REACHED
        curve = _curve(m.curve)
        curves[role][chain] = curve
        train[role][chain] = next((s for s, a in zip(curve["step"], curve["train_accuracy"])
                                   if a >= 0.95), NOT_REACHED)
        if role == "ticket":
            sparsity.append(m.costs["sparsity"])
            remaining.append(m.costs["remaining"])

    def median(values: list[Any]) -> Any:
        v = float(np.median([math.inf if x in (None, NOT_REACHED) else x for x in values]))
        return NOT_REACHED if math.isinf(v) else v

    def steps(v: Any) -> float:
        return math.inf if v in (None, NOT_REACHED) else float(v)

    med = {r: median(per[r]) for r in ROLES}
    mean = {r: float(np.mean([steps(v) for v in per[r]])) for r in ROLES}
    sooner_than = {r: sum(steps(per["ticket"][c]) < steps(per[r][c]) for c in range(seeds))
                   for r in ("dense", "random_prune")}
    sooner = [steps(per["ticket"][c]) < min(steps(per["dense"][c]), steps(per["random_prune"][c]))
              for c in range(seeds)]
    ratio = {f"speedup_vs_{r}": (round(med[r] / med["ticket"], 3)
                                 if NOT_REACHED not in (med[r], med["ticket"]) else None)
             for r in ("dense", "random_prune")}
    return {"seeds": seeds, "steps_to_95": med, "per_seed": per,
            "mean_steps_to_95": {r: NOT_REACHED if math.isinf(v) else v for r, v in mean.items()},
            "ticket_sooner_than": sooner_than,
            "reached": {r: sum(v not in (None, NOT_REACHED) for v in per[r]) for r in ROLES},
            "train_steps_to_95": {r: median(train[r]) for r in ROLES},
            "sparsity": round(float(np.mean(sparsity)), 4) if sparsity else None,
            "remaining": round(float(np.mean(remaining)), 4) if remaining else None,
            "ticket_sooner": sooner,
            "ticket_sooner_than_both": steps(med["ticket"]) < min(steps(med["dense"]),
                                                                  steps(med["random_prune"])),
            **ratio, "curves": curves}


def _curve(points: list[dict[str, Any]]) -> dict[str, list[float]]:
    by: dict[str, dict[int, float]] = {}
    for p in points:
        by.setdefault(p["name"], {})[int(p["step"])] = float(p["value"])
    steps = sorted(by.get("heldout_accuracy", {}))
    return {"step": steps, **{k: [by.get(k, {}).get(s, math.nan) for s in steps]
                              for k in ("train_accuracy", "heldout_accuracy")}}


def plot(curves: dict[str, list[dict[str, list[float]]]], path: str, out: dict[str, Any]) -> str:
    """Draws every run's held-out (solid) and training (dotted) accuracy; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for role in ROLES:
        for i, c in enumerate(curves[role]):
            if not c.get("step"):
                continue
            label = f"{role}: median {_fmt(out['steps_to_95'][role])} steps to 95%" if i == 0 \
                else None
            ax.plot(c["step"], c["heldout_accuracy"], color=_COLORS[role], lw=1.4, label=label)
            ax.plot(c["step"], c["train_accuracy"], color=_COLORS[role], lw=0.8, ls=":")
    ax.axhline(0.95, color="black", lw=0.6, ls="--")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (solid: held out, dotted: training)")
    s = out["settings"]
    ax.set_title(f"grokking tickets, {s['task']}, {s['parent']}, sparsity "
                 f"{out['sparsity']}, {out['seeds']} seeds", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(out: dict[str, Any]) -> None:
    """Prints the figures of `run`."""
    s = out["settings"]
    print(f"memnas bench grokking: {s['task']}, {s['parent']}, {s['optimizer']}, lr {s['lr']}, "
          f"weight decay {s['weight_decay']}, cap {out['step_cap']} steps; {s['pruning']}; "
          f"{out['seeds']} seeds in {out['wall_s']:.0f} s")
    print(f"  ticket sparsity {out['sparsity']} (embedding + hidden), remaining "
          f"{out['remaining']} of all weights")
    print("  steps to 95% held out (train 95%: median steps to 95% training accuracy)")
    print(f"  {'role':13s} {'median':>11s} {'mean':>11s} {'train 95%':>11s}  per seed")
    for r in ROLES:
        cells = [_fmt(out[k][r]) for k in ("steps_to_95", "mean_steps_to_95",
                                            "train_steps_to_95")]
        seeds = ", ".join(_fmt(v) for v in out["per_seed"][r])
        print(f"  {r:13s} {cells[0]:>11s} {cells[1]:>11s} {cells[2]:>11s}  {seeds}")
    t = out["ticket_sooner_than"]
    print(f"  ticket sooner than both controls: {out['ticket_sooner_than_both']} (medians); "
          f"per seed {sum(out['ticket_sooner'])} of {out['seeds']} (than dense {t['dense']}, "
          f"than random pruning {t['random_prune']}); median speedup vs dense "
          f"{out['speedup_vs_dense']}, vs random pruning {out['speedup_vs_random_prune']}")
    print(f"  wrote {out['png']}")


def _fmt(v: Any) -> str:
    return str(v) if isinstance(v, str) or v is None else f"{v:g}"
