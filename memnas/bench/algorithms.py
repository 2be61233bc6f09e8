"""`memnas bench algorithms`: search algorithms compared on the tabular MQAR memory benchmark."""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Sequence

ALGORITHMS = ("random", "evolution", "mcts", "tpe")
"""The algorithms compared, by registry name."""

OPTIONS: dict[str, dict[str, Any]] = {"evolution": {"population_size": 10, "tournament_size": 3}}
"""Options per algorithm, as a user would set them for a space of a few hundred points."""

PROPOSAL_CAP = 4
"""A run ends after ``PROPOSAL_CAP * budget`` proposals, distinct or not."""

COUNTING = ("distinct evaluations: a re-proposed architecture is answered from the ones "
            "already evaluated for free, as memnas's equivalence cache does, and not counted; "
            "a run stops once it reaches the top 1%, or after 4 x budget proposals (stalled)")


def search_curve(name: str, seed: int, budget: int, rewards: dict[str, float],
                 spec: Any, stop_at: float | None = None,
                 options: dict[str, Any] | None = None) -> tuple[list[float], int]:
    """Runs one search through the algorithm's propose/feedback on tabulated rewards.

    Args:
      name: Registered algorithm name.
      seed: The algorithm's seed.
      budget: Most distinct evaluations.
      rewards: ``{dna_key: reward}`` for every point of the space.
      spec: The space's DNA spec.
      stop_at: Stop once the best reward reaches this (the curve is flat afterwards).
      options: Keyword options of the algorithm's factory.

    Returns:
      ``(best-so-far after each distinct evaluation, proposals made)``. The search
      also ends when the algorithm is exhausted or has made ``PROPOSAL_CAP * budget``
      proposals (an algorithm stuck re-proposing architectures it has seen).
    """
    from memnas.algorithms import make_algorithm
    from memnas.tabular.table import dna_key

    generator = make_algorithm(name, seed=seed, **(options or {}))
    generator.setup(spec)
    seen: dict[str, float] = {}
    curve: list[float] = []
    best, proposals = -math.inf, 0
    while len(curve) < budget and proposals < PROPOSAL_CAP * budget:
        try:
            dna = generator.propose()
        except StopIteration:
            break
        proposals += 1
        key = dna_key(dna)
        if key not in seen:
            seen[key] = rewards[key]
            best = max(best, seen[key])
            curve.append(best)
        generator.feedback(dna, seen[key])
        if stop_at is not None and best >= stop_at:
            break
    return curve, proposals


def evals_to_reach(curve: Sequence[float], threshold: float) -> int | None:
    """Distinct evaluations until the best-so-far reaches ``threshold`` (None: never)."""
    for i, best in enumerate(curve, start=1):
        if best >= threshold:
            return i
    return None


def quantile_curves(curves: list[list[float]], budget: int) -> dict[str, list[float]]:
    """Median and quartiles of best-so-far curves, each padded flat to ``budget``."""
    padded = [c + [c[-1]] * (budget - len(c)) if c else [math.nan] * budget for c in curves]
    out: dict[str, list[float]] = {"q25": [], "median": [], "q75": []}
    for i in range(budget):
        column = sorted(c[i] for c in padded)
        q25, median, q75 = statistics.quantiles(column, n=4, method="inclusive") \
            if len(column) > 1 else (column[0],) * 3
        out["q25"].append(round(q25, 5))
        out["median"].append(round(median, 5))
        out["q75"].append(round(q75, 5))
    return out


def plot_curves(curves: dict[str, dict[str, list[float]]], threshold: float, path: str,
                title: str) -> None:
    """Saves best-so-far curves (median line, quartile band) vs evaluations as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, q in curves.items():
        x = range(1, len(q["median"]) + 1)
        (line,) = ax.plot(x, q["median"], label=name)
        ax.fill_between(x, q["q25"], q["q75"], color=line.get_color(), alpha=0.2)
    ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label="top 1%")
    ax.set_xscale("log")
    ax.set_xlabel("distinct architectures evaluated")
    ax.set_ylabel("best mean MQAR accuracy so far")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool = False, seeds: int | None = None, budget: int | None = None,
        table_path: str | None = None, png: str = "bench-algorithms.png",
        algorithms: Sequence[str] = ALGORITHMS) -> dict[str, Any]:
    """Random, regularized evolution, MCTS and TPE on the tabular benchmark.

    Each algorithm searches the table's space ``seeds`` times (20, or 3 with
    ``quick``) with a budget of ``budget`` distinct evaluations (default: the table
    size), rewarded with the mean accuracy over the table's two training seeds.

    Prints and returns: ``seeds``, ``table_size``, ``budget``, ``threshold`` (the
    top-1% accuracy), ``evals_to_top1pct`` (median per algorithm; a run that never
    reached the top 1% counts as ``budget + 1``), ``evals_to_top1pct_per_seed``,
    ``reached`` (runs that reached it), ``stalled`` (runs that ended at the proposal
    cap, re-proposing seen architectures, without reaching it), ``ratio_to_random``,
    ``curves`` (median and quartiles of best-so-far per evaluation; each run stops
    once it reaches the top 1% and its curve is held flat from there), ``png``,
    ``skipped`` (algorithms not registered), ``wall_s_per_algorithm``, ``options``
    and ``counting``.
    """
    import pyglove as pg

    from memnas.algorithms import ALGORITHMS as REGISTRY
    from memnas.tabular.table import load_table

    start = time.perf_counter()
    table = load_table(table_path)
    spec = pg.dna_spec(table.space())
    rewards = table.accuracies()
    n_seeds = seeds or (3 if quick else 20)
    budget = budget or len(table)
    threshold = table.top_threshold(0.01)
    top = sum(1 for r in rewards.values() if r >= threshold)
    out: dict[str, Any] = {
        "seeds": n_seeds, "table_size": len(table), "budget": budget, "threshold": threshold,
        "top_architectures": top, "counting": COUNTING, "skipped": [], "options": {},
        "evals_to_top1pct": {}, "evals_to_top1pct_per_seed": {}, "reached": {},
        "stalled": {}, "curves": {}, "proposal_cap": PROPOSAL_CAP * budget,
        # Uniform sampling without replacement needs (N + 1) / (k + 1) draws on average.
        "random_expected": (len(table) + 1) / (top + 1),
    }
    for name in algorithms:
        if name not in REGISTRY:
            out["skipped"].append(name)
            print(f"  {name}: skipped, not in memnas.algorithms.ALGORITHMS {sorted(REGISTRY)}")
            continue
        options = OPTIONS.get(name, {})
        curves, per_seed, began, stalled = [], [], time.perf_counter(), 0
        for seed in range(n_seeds):
            # A run stops at the top 1%: PyGlove's random proposals cost ~10-70 ms each.
            curve, proposals = search_curve(name, seed, budget, rewards, spec, stop_at=threshold,
                                            options=options)
            stalled += proposals >= PROPOSAL_CAP * budget and curve[-1] < threshold
            curves.append(curve)
            per_seed.append(evals_to_reach(curve, threshold))
        censored = [budget + 1 if v is None else v for v in per_seed]
        out["options"][name] = options
        out["evals_to_top1pct"][name] = statistics.median(censored)
        out["evals_to_top1pct_per_seed"][name] = per_seed
        out["reached"][name] = sum(v is not None for v in per_seed)
        out["stalled"][name] = stalled
        out["curves"][name] = quantile_curves(curves, budget)
        out.setdefault("wall_s_per_algorithm", {})[name] = round(time.perf_counter() - began, 1)
        print(f"  {name}: {n_seeds} runs in {out['wall_s_per_algorithm'][name]:.1f} s", flush=True)
    base = out["evals_to_top1pct"].get("random")
    out["ratio_to_random"] = {k: v / base for k, v in out["evals_to_top1pct"].items()} if base else {}
    out["png"] = os.path.abspath(png)
    if out["curves"]:
        plot_curves(out["curves"], threshold, out["png"],
                    f"tabular MQAR memory benchmark ({len(table)} architectures)\n"
                    f"{n_seeds} seeds: median and quartiles (runs stop at the top 1%)")
    out["wall_s"] = time.perf_counter() - start
    _report(out)
    return out


def _report(out: dict[str, Any]) -> None:
    print(f"memnas bench algorithms: tabular MQAR memory benchmark, {out['table_size']} "
          f"architectures, {out['seeds']} seeds per algorithm, budget {out['budget']} evaluations")
    print(f"  top 1%: mean accuracy >= {out['threshold']:.4f} ({out['top_architectures']} "
          f"architectures); counting {out['counting']}")
    print(f"  median evaluations to the top 1% (x random; runs that reached it; "
          f"random's expectation {out['random_expected']:.1f}):")
    for name, median in out["evals_to_top1pct"].items():
        ratio = out["ratio_to_random"].get(name)
        stalled = out["stalled"][name]
        print(f"    {name:10s} {median:7.1f}  ({ratio:.2f}x)  {out['reached'][name]}/{out['seeds']}"
              + (f" ({stalled} stalled)" if stalled else "") + f"  {out['options'].get(name) or ''}")
    checkpoints = [n for n in (5, 10, 20, 50, 100, 200) if n <= out["budget"]]
    print("  median best-so-far accuracy after " + ", ".join(map(str, checkpoints)) + " evaluations:")
    for name, q in out["curves"].items():
        print(f"    {name:10s} " + "  ".join(f"{q['median'][n - 1]:.3f}" for n in checkpoints))
    if out["curves"]:
        print(f"  curves: {out['png']}")
    print(f"  ({out['wall_s']:.1f} s)")
