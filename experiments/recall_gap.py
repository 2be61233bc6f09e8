"""Recall gap: softmax attention vs linear attention vs a small fixed-state memory on MQAR.

Zoology (Arora et al., 2023, https://arxiv.org/abs/2312.04927) and MoM (Du et al.,
2025, "MoM: Linear Sequence Modeling with Mixture-of-Memories",
https://arxiv.org/abs/2502.13685) report that attention solves multi-query
associative recall almost perfectly at small scale, while models with a fixed-size
recurrent state fall behind as the number of key-value pairs grows relative to the
state. This script trains each architecture from scratch on two MQAR levels with two
seeds and prints held-out accuracy:

    python experiments/recall_gap.py            # easy + medium, 2 seeds (a few minutes)
    python experiments/recall_gap.py --quick    # easy only, fewer steps, no extras (< 1 min)

Importing it runs nothing; `run()` returns the rows and `format_table()` prints them.
Registered recurrent mixers join the comparison at width 64: DeltaNet by default
when it is registered (not with ``--quick``), others with
``--mixers DeltaNet TitansMemory ...``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

from memnas.evaluators import MQAR, TrainEvaluator
from memnas.measurement import Context
from memnas.searchspace import (
    Block,
    LinearAttention,
    Mixer,
    SequenceModel,
    SoftmaxAttention,
    registered_mixers,
)

WIDE, NARROW, HEADS, LAYERS = 64, 16, 2, 2
# Registered recurrent mixers compared by default (at the wide width) when present.
DEFAULT_EXTRAS = ("DeltaNet",)
# Per-head matrix memories: their state is num_heads * d_head^2 floats per layer.
_MATRIX_STATE = {"LinearAttention", "DeltaNet"}
FULL = {"levels": {"easy": 400, "medium": 800}, "seeds": (0, 1)}  # level -> steps
QUICK = {"levels": {"easy": 250}, "seeds": (0, 1)}

Arch = tuple[Callable[[], Mixer], int, Callable[[int], str]]


def architectures(extras: tuple[str, ...] = DEFAULT_EXTRAS) -> dict[str, Arch]:
    """Label -> (mixer factory, width, state size per layer at sequence length T, as text).

    Softmax attention and linear attention at width 64, linear attention at width 16
    (a small fixed state), and each registered mixer named in ``extras`` at width 64
    (with 2 heads when it has a ``num_heads`` field); unregistered names are skipped.
    """
    archs: dict[str, Arch] = {
        f"softmax attention d={WIDE}": (
            lambda: SoftmaxAttention(num_heads=HEADS), WIDE,
            lambda t: f"KV cache 2*d*T = {2 * WIDE * t}",
        ),
        f"linear attention d={WIDE}": (lambda: LinearAttention(num_heads=HEADS), WIDE,
                                      _state("LinearAttention", WIDE)),
        f"linear attention d={NARROW}": (lambda: LinearAttention(num_heads=HEADS), NARROW,
                                        _state("LinearAttention", NARROW)),
    }
    registered = registered_mixers()
    for name in extras:
        if name in registered:
            archs[f"{name} d={WIDE}"] = (_factory(registered[name]), WIDE, _state(name, WIDE))
    return archs


def _factory(cls: type[Mixer]) -> Callable[[], Mixer]:
    fields = cls.__schema__.fields if hasattr(cls, "__schema__") else {}
    if any(str(key) == "num_heads" for key in fields):
        return lambda: cls(num_heads=HEADS)
    return cls


def _state(name: str, width: int) -> Callable[[int], str]:
    if name in _MATRIX_STATE:
        d_head = width // HEADS
        return lambda t: f"fixed {HEADS}*{d_head}^2 = {HEADS * d_head**2}"
    return lambda t: "fixed (see the mixer)"


def run(
    quick: bool = False, extras: tuple[str, ...] = DEFAULT_EXTRAS, verbose: bool = True
) -> list[dict[str, Any]]:
    """Trains every architecture on every level and seed; returns one row per run.

    Args:
      quick: The `QUICK` plan (easy level, 250 steps) instead of `FULL`.
      extras: Registered recurrent mixers to compare too, see `architectures`.
      verbose: Print each run as it finishes.

    Returns:
      Rows ``{"model", "level", "seed", "accuracy", "params", "state", "seconds"}``;
      a model that fails to build or train gets ``accuracy=None`` and an ``"error"``.
    """
    plan = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for level, steps in plan["levels"].items():
        task = MQAR.level(level)
        evaluator = TrainEvaluator(task=task, steps=steps, batch_size=32, lr=3e-3,
                                   weight_decay=0.1, eval_examples=512)
        for label, (mixer, width, state) in architectures(extras).items():
            for seed in plan["seeds"]:
                row: dict[str, Any] = {"model": label, "level": level, "seed": seed,
                                       "state": state(task.seq_len)}
                start = time.perf_counter()
                try:
                    spec = SequenceModel(vocab_size=task.vocab_size, d_model=width,
                                         layers=[Block(mixer(), 2) for _ in range(LAYERS)],
                                         max_len=task.seq_len)
                    m = evaluator(spec, Context(seed=seed, num_cpus=1))
                    row.update(accuracy=m.metrics["accuracy"], params=int(m.costs["params"]))
                except Exception as e:  # an extra mixer may not build with defaults
                    row.update(accuracy=None, params=None, error=f"{type(e).__name__}: {e}")
                row["seconds"] = time.perf_counter() - start
                rows.append(row)
                if verbose:
                    acc = (f"failed: {row['error']:.200}" if row["accuracy"] is None
                           else f"{row['accuracy']:.3f}")
                    print(f"  {level:7s} {label:28s} seed {seed}: {acc} "
                          f"({row['seconds']:.1f} s)", flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Mean (min-max over seeds) held-out accuracy per model and level, with state sizes.

    The parameter count is the first level's (the embedding and head grow with the
    level's vocabulary).
    """
    levels = list(dict.fromkeys(r["level"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    header = f"{'model':28s} {'params':>7s} " + " ".join(
        f"{_level_title(lv):>24s}" for lv in levels) + "  recurrent state / layer (T=seq_len)"
    lines = [header, "-" * len(header)]
    for model in models:
        cells, params, state = [], "", ""
        for level in levels:
            got = [r for r in rows if r["model"] == model and r["level"] == level]
            accs = [r["accuracy"] for r in got if r["accuracy"] is not None]
            if accs:
                cells.append(f"{statistics.mean(accs):.3f} ({min(accs):.2f}-{max(accs):.2f})")
            else:
                cells.append("failed")
            params = params or next((str(r["params"]) for r in got if r["params"]), "")
            state += f"{'; ' if state else ''}{level}: {got[0]['state']}"
        lines.append(f"{model:28s} {params:>7s} " + " ".join(f"{c:>24s}" for c in cells)
                     + "  " + state)
    return "\n".join(lines)


def _level_title(level: str) -> str:
    task = MQAR.level(level)
    return f"{level} (T={task.seq_len},kv={task.num_kv_pairs})"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line: runs the comparison and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="easy level only, fewer steps")
    parser.add_argument("--mixers", nargs="*", default=None, metavar="NAME",
                        help="registered recurrent mixers to add at d=64 (default: "
                             f"{' '.join(DEFAULT_EXTRAS)}, none with --quick; registered: "
                             f"{' '.join(registered_mixers())})")
    args = parser.parse_args(argv)
    if args.mixers is None:
        args.mixers = [] if args.quick else list(DEFAULT_EXTRAS)
    start = time.perf_counter()
    rows = run(quick=args.quick, extras=tuple(args.mixers))
    print()
    print("MQAR held-out accuracy, mean (min-max) over seeds "
          f"{', '.join(map(str, (QUICK if args.quick else FULL)['seeds']))}:")
    print(format_table(rows))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return rows


if __name__ == "__main__":
    main()
