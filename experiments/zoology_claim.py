"""Zoology's claim on memnas's own table: does MQAR recall rank architectures as real text does?

Zoology (Arora et al., 2023, https://arxiv.org/abs/2312.04927) finds that associative
recall explains most of the language-modelling gap between attention and
fixed-state mixers. The v2 tabular benchmark holds, for its 64 homogeneous stacks,
both MQAR accuracy (T=16) and bits per byte on the Python standard library's bytes
(T=128). This script prints

- Spearman's rank correlation between MQAR accuracy and bits per byte over those
  rows (negative: better recall goes with fewer bits), overall and per width;
- per state-size bin (bytes per sequence at inference, each task at its own length),
  the best KV-cache model (attention, Hopfield) and the best fixed-state model on
  each task, and the gap between them.

    python experiments/zoology_claim.py [--table FILE]

Importing it runs nothing; `measure()` returns the figures.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import pandas as pd

KV_CACHE = ("attn", "hopfield", "dhopfield")


def rows(table: Any) -> pd.DataFrame:
    """One row per table row with LM figures: family, width, kind, accuracy, bits, state sizes."""
    out = []
    for key, row in table.rows.items():
        lm = row.get("lm")
        if not lm:
            continue
        width, mixers = row["summary"].split(" | ")[:2]
        family = mixers.split(" > ")[0].split("(")[0]
        out.append({"key": key, "summary": row["summary"], "family": family,
                    "width": int(width[2:]), "depth": mixers.count(" > ") + 1,
                    "kind": "kv-cache" if family in KV_CACHE else "fixed-state",
                    "accuracy": table.accuracy(key), "bits_per_byte": lm["bits_per_byte"],
                    "mqar_state_bytes": row.get("state_bytes"),
                    "lm_state_bytes": lm["state_bytes"]})
    return pd.DataFrame(out)


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    return float(x.rank().corr(y.rank()))


def gaps(df: pd.DataFrame, state: str, value: str, best: str) -> pd.DataFrame:
    """Per power-of-4 bin of ``state``: best KV-cache and fixed-state ``value`` and their gap."""
    binned = df.assign(bin=[int(math.floor(math.log(s, 4))) for s in df[state]])
    pick = (lambda s: s.max()) if best == "max" else (lambda s: s.min())
    table = binned.groupby(["bin", "kind"])[value].agg(pick).unstack("kind")
    table = table.dropna()
    table["gap"] = table["kv-cache"] - table["fixed-state"]
    table.index = [f"<{4 ** (b + 1)} B" for b in table.index]
    return table


def measure(path: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """The figures: overall and per-width Spearman, and the matched-state gaps per task."""
    from memnas.tabular.table import load_table
    from memnas.tabular.v2 import TABLE_V2_PATH

    df = rows(load_table(path or TABLE_V2_PATH))
    if len(df) < 3:
        raise SystemExit(f"the table has {len(df)} LM rows; add them with "
                         "`python -m memnas.tabular.lm_rows`")
    figures = {
        "lm_rows": len(df),
        "spearman": spearman(df["accuracy"], df["bits_per_byte"]),
        "spearman_by_width": {int(w): spearman(g["accuracy"], g["bits_per_byte"])
                              for w, g in df.groupby("width")},
        "mqar_gap": gaps(df, "mqar_state_bytes", "accuracy", "max"),
        "lm_gap": gaps(df, "lm_state_bytes", "bits_per_byte", "min"),
    }
    if verbose:
        print(f"{len(df)} architectures with both MQAR accuracy and bits per byte")
        print(f"Spearman(MQAR accuracy, bits per byte) = {figures['spearman']:.3f}; by width: "
              + ", ".join(f"d={w}: {r:.3f}" for w, r in figures["spearman_by_width"].items()))
        print("\nMQAR accuracy at matched state (best per kind; gap = kv-cache - fixed-state):")
        print(figures["mqar_gap"].round(3).to_string())
        print("\nbits per byte at matched state (best per kind; gap = kv-cache - fixed-state):")
        print(figures["lm_gap"].round(3).to_string())
        print("\nper family (mean over its rows):")
        print(df.groupby("family")[["accuracy", "bits_per_byte"]].mean().round(3)
              .sort_values("bits_per_byte").to_string())
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: prints the figures of the shipped v2 table (or ``--table FILE``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=None)
    return measure(parser.parse_args(argv).table)


if __name__ == "__main__":
    main()
