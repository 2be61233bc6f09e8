"""The printed table and the PNGs of `memnas bench efficiency` (see `memnas.bench.efficiency`)."""

from __future__ import annotations

import os
from typing import Any


def _fmt(q: dict[str, float], digits: int = 1) -> str:
    return f"{q['median']:.{digits}f} [{q['q25']:.{digits}f}, {q['q75']:.{digits}f}]"


def report(out: dict[str, Any]) -> None:
    """Prints the figures of one run as a readable table."""
    det = out["details"]
    per, unreached = det["seeds_per_method"], det["unreached"]
    print(f"memnas bench efficiency: tabular benchmark v2 (544 architectures, budgets "
          f"50/100/200/400 steps), memnas driver, cache off, cap {det['cap_trials']} trials "
          f"per run (a run that never reaches its target counts at the cap)")
    print(f"  top 1%: full-run mean accuracy >= {det['threshold']:.4f} "
          f"({det['top_architectures']} architectures)")
    qs = det["quartiles"].get("compute_to_top1pct", {})
    if qs:
        print("  simulated training seconds to the first full-budget top-1% trial, "
              "median [q25, q75]:")
        base = qs.get("random", {}).get("median")
        for m, q in qs.items():
            ratio = f"  {q['median'] / base:.2f}x random" if base else ""
            trials = det["per_seed"]["compute_to_top1pct"][m]["trials"]
            print(f"    {m:13s} {_fmt(q):>28s}{ratio}  (median {sorted(trials)[len(trials) // 2]}"
                  f" trials; {per[m]} seeds, {unreached[m]} unreached)")
    qs = det["quartiles"].get("evals_to_nsga2_hv200", {})
    if qs:
        hv = det.get("nsga2_hv200")
        print(f"  full evaluations to NSGA-II's median hypervolume after 200 evaluations "
              f"({hv['median']:.2f}; reference {det['reference']}), median [q25, q75]:")
        for m, q in qs.items():
            print(f"    {m:13s} {_fmt(q):>28s}  ({per[m]} seeds, {unreached[m]} unreached)")
    for m, why in out.get("skipped", {}).items():
        print(f"    {m:13s} skipped: {why}")
    ws = det["quartiles"].get("warm_start_evals")
    if ws:
        print(f"  evaluations to the top 1%: evolution warm-started from a 100-trial random "
              f"search {_fmt(ws['warm'])}, cold {_fmt(ws['cold'])}; ratio of medians "
              f"{out['warm_start_evals_ratio']:.2f} ({unreached['warm_start']} unreached)")
    print("  wall s per method: " + ", ".join(f"{m} {s}" for m, s in det["wall_s"].items())
          + f"; total {out.get('wall_s', 0)} s")
    for p in out["png"]:
        print(f"  wrote {p}")


def plot_all(out: dict[str, Any], bench: Any, png_dir: str) -> list[str]:
    """Writes one PNG per comparison into ``png_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(png_dir, exist_ok=True)
    det, paths = out["details"], []
    so = det["per_seed"].get("compute_to_top1pct")
    if so:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        names = list(so)
        ax.boxplot([so[m]["compute"] for m in names], whis=(0, 100))
        ax.set_xticks(range(1, len(names) + 1), names)
        for i, m in enumerate(names, start=1):
            ax.plot([i] * len(so[m]["compute"]), so[m]["compute"], ".", alpha=0.5)
        ax.set_yscale("log")
        ax.set_ylabel("simulated training seconds")
        ax.set_title("compute to the first full-budget top-1% trial (tabular v2; box: "
                     "quartiles)", fontsize=9)
        paths.append(_save(fig, plt, png_dir, "bench-efficiency-compute.png"))
    mo = det["per_seed"].get("evals_to_nsga2_hv200")
    if mo:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m, r in mo.items():
            _band(ax, r["curves"], m)
        ax.axhline(det["nsga2_hv200"]["median"], color="gray", ls="--", lw=1,
                   label="NSGA-II median after 200")
        ax.set_xlabel("full evaluations (trials at 400 steps)")
        ax.set_ylabel("hypervolume (accuracy max, state_bytes min)")
        ax.set_title("hypervolume vs full evaluations (median, quartile band)", fontsize=9)
        ax.legend(loc="lower right")
        paths.append(_save(fig, plt, png_dir, "bench-efficiency-hypervolume.png"))
    ws = det["per_seed"].get("warm_start_evals")
    if ws:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        data = [ws["warm"]["evals"], ws["cold"]]
        ax.boxplot(data, whis=(0, 100))
        ax.set_xticks([1, 2], ["warm start", "cold"])
        for i, d in enumerate(data, start=1):
            ax.plot([i] * len(d), d, ".", alpha=0.5)
        ax.set_ylabel("evolution's evaluations to the top 1%")
        ax.set_title("warm start from a 100-trial random search", fontsize=9)
        paths.append(_save(fig, plt, png_dir, "bench-efficiency-warm-start.png"))
    return paths


def _band(ax: Any, curves: list[list[float]], label: str) -> None:
    """Median line and quartile band of hypervolume curves (each held flat at its end)."""
    import numpy as np

    curves = [c for c in curves if c]
    if not curves:
        return
    n = max(len(c) for c in curves)
    m = np.array([c + [c[-1]] * (n - len(c)) for c in curves])
    x = np.arange(1, n + 1)
    q25, med, q75 = np.percentile(m, [25, 50, 75], axis=0)
    (line,) = ax.plot(x, med, label=label)
    ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.2)


def _save(fig: Any, plt: Any, folder: str, name: str) -> str:
    path = os.path.abspath(os.path.join(folder, name))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
