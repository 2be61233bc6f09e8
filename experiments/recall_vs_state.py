"""Recall against state size: Zoology's accuracy-versus-state figure, one line per mixer family.

Zoology (Arora et al., 2023, https://arxiv.org/abs/2312.04927, Fig. 2/3) plots MQAR
accuracy against the memory a model carries per sequence at inference: attention's
KV cache grows with the sequence, a recurrent mixer's state is fixed, and for
fixed-state mixers recall improves with state size. This script trains each family
(each registered mixer with a parallel form, at its ``bench_config()``; softmax
attention; linear attention) at several widths, so each family spans several state
sizes, and prints held-out MQAR accuracy with the model's ``state_bytes``
(`memnas.evaluators.state_bytes`, float32), grouped into state-size buckets so that
families are compared at matched state. It also draws the figure:

    python experiments/recall_vs_state.py                 # medium MQAR, widths 16/32/64
    python experiments/recall_vs_state.py --quick         # easy MQAR, fewer steps (minutes)
    python experiments/recall_vs_state.py --png recall_vs_state.png --json rows.json

Importing it runs nothing; `run()` returns the rows, `format_table()` and `plot()`
present them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import pyglove as pg

from memnas.evaluators import MQAR, TrainEvaluator
from memnas.measurement import Context
from memnas.searchspace import Block, LinearAttention, Mixer, SequenceModel, SoftmaxAttention
from memnas.searchspace import registered_mixers

LAYERS = 2
FULL = {"level": "medium", "steps": 800, "widths": (16, 32, 64), "seeds": (0,)}
QUICK = {"level": "easy", "steps": 250, "widths": (16, 32), "seeds": (0,)}
# Families left out by default: wrappers and memories without a parallel form are slow
# on CPUs at these lengths; name them with --mixers to include them.
SKIP = ("ELMNeuron", "EpisodicMemory", "SegmentMemory", "MirasMemory", "TitansMemory")


def families(names: list[str] | None = None) -> dict[str, Mixer]:
    """Family label -> mixer spec (each mixer's ``bench_config()``, heads 2 where it has heads).

    Default: softmax attention, linear attention and every registered mixer with a
    ``bench_config`` except those in `SKIP`.
    """
    chosen: dict[str, Mixer] = {
        "SoftmaxAttention": SoftmaxAttention(num_heads=2),
        "LinearAttention": LinearAttention(num_heads=2),
    }
    registry = registered_mixers()
    for name in names if names is not None else sorted(registry):
        cls = registry.get(name)
        if cls is None:
            raise ValueError(f"no mixer registered as {name!r}; registered: {sorted(registry)}")
        if names is None and (name in SKIP or not hasattr(cls, "bench_config")):
            continue
        if name not in chosen:
            spec = cls.bench_config() if hasattr(cls, "bench_config") else cls.space()
            if not pg.is_deterministic(spec):
                spec = pg.materialize(spec, pg.dna_spec(spec).first_dna())
            chosen[name] = spec
    return chosen


def run(quick: bool = False, names: list[str] | None = None,
        verbose: bool = True) -> list[dict[str, Any]]:
    """Trains every family at every width and seed; one row per run.

    Returns:
      Rows ``{"family", "width", "seed", "accuracy", "state_bytes", "params",
      "seconds"}``; a model that fails gets ``accuracy=None`` and an ``"error"``.
    """
    plan = QUICK if quick else FULL
    task = MQAR.level(plan["level"])
    evaluator = TrainEvaluator(task=task, steps=plan["steps"], batch_size=32, lr=3e-3,
                               weight_decay=0.1, eval_examples=512)
    rows: list[dict[str, Any]] = []
    for family, mixer in families(names).items():
        for width in plan["widths"]:
            for seed in plan["seeds"]:
                row: dict[str, Any] = {"family": family, "width": width, "seed": seed,
                                       "level": plan["level"]}
                start = time.perf_counter()
                try:
                    spec = SequenceModel(vocab_size=task.vocab_size, d_model=width,
                                         layers=[Block(mixer=mixer, mlp_ratio=2)
                                                 for _ in range(LAYERS)],
                                         max_len=task.seq_len)
                    m = evaluator(spec, Context(seed=seed, num_cpus=1))
                    row.update(accuracy=m.metrics["accuracy"],
                               state_bytes=m.costs.get("state_bytes"),
                               params=int(m.costs["params"]))
                except Exception as e:  # one family failing does not stop the others
                    row.update(accuracy=None, state_bytes=None, params=None,
                               error=f"{type(e).__name__}: {e}")
                row["seconds"] = time.perf_counter() - start
                rows.append(row)
                if verbose:
                    acc = ("failed: " + row["error"][:160] if row["accuracy"] is None
                           else f"{row['accuracy']:.3f}")
                    print(f"  {family:22s} d={width:<3d} seed {seed}: {acc}  "
                          f"state {row['state_bytes']} B ({row['seconds']:.1f} s)", flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Accuracy per family in state-size buckets (powers of 4 bytes): matched-state columns."""
    ok = [r for r in rows if r["accuracy"] is not None and r["state_bytes"]]
    buckets = sorted({_bucket(r["state_bytes"]) for r in ok})
    header = f"{'family':22s} " + " ".join(f"{_bucket_label(b):>12s}" for b in buckets)
    lines = [header, "-" * len(header)]
    for family in dict.fromkeys(r["family"] for r in rows):
        cells = []
        for b in buckets:
            accs = [r["accuracy"] for r in ok if r["family"] == family
                    and _bucket(r["state_bytes"]) == b]
            cells.append(f"{max(accs):.3f}" if accs else "")
        failed = [r for r in rows if r["family"] == family and r["accuracy"] is None]
        tail = f"  ({len(failed)} failed)" if failed else ""
        lines.append(f"{family:22s} " + " ".join(f"{c:>12s}" for c in cells) + tail)
    return "\n".join(lines)


def _bucket(state_bytes: float) -> int:
    return int(math.floor(math.log(state_bytes, 4)))


def _bucket_label(b: int) -> str:
    low = 4**b
    return f"<{_human(4 * low)}"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:g}{unit}"
        n /= 1024
    return f"{n:g}GiB"


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Draws accuracy against state bytes (log scale), one line per family, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for family in dict.fromkeys(r["family"] for r in rows):
        pts = sorted((r["state_bytes"], r["accuracy"]) for r in rows
                     if r["family"] == family and r["accuracy"] is not None and r["state_bytes"])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=family)
    ax.set_xscale("log")
    ax.set_xlabel("state per sequence at inference (bytes, float32, after max_len tokens)")
    ax.set_ylabel("MQAR held-out accuracy")
    level = rows[0]["level"] if rows else ""
    ax.set_title(f"Recall vs state size (MQAR {level}, {LAYERS} layers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line: runs the comparison, prints the table, writes the PNG (and JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="easy MQAR, two widths, fewer steps")
    parser.add_argument("--mixers", nargs="*", default=None, metavar="NAME",
                        help="registered mixers to compare beside attention and linear attention")
    parser.add_argument("--png", default="recall_vs_state.png", help="figure path")
    parser.add_argument("--json", default=None, help="write the rows as JSON too")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(quick=args.quick, names=args.mixers)
    print("\nMQAR held-out accuracy by state size per sequence (best run in each bucket):")
    print(format_table(rows))
    plot(rows, args.png)
    print(f"\nfigure: {args.png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{time.perf_counter() - start:.0f} s in all")
    return rows


if __name__ == "__main__":
    main()
