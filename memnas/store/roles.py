"""A trial's role: a candidate architecture, or a supernet run (never best, never on a front)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import sqlalchemy as sa

from memnas.records import SUPERNET_METRIC, WITH_RESULT, is_supernet

if TYPE_CHECKING:
    import pandas as pd

    from memnas.store._store import Store

__all__ = ["SUPERNET_METRIC", "SUPERNET_SUMMARY", "candidates", "is_supernet", "not_supernet",
           "supernet_mask", "supernet_summary"]

SUPERNET_SUMMARY = "supernet run, not a candidate"
"""How a supernet trial's summary starts (its alphas follow when its artifact has them)."""


def supernet_mask(df: "pd.DataFrame") -> Any:
    """Boolean array: which rows of a trials frame are supernet runs (`is_supernet`)."""
    import numpy as np

    if SUPERNET_METRIC not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return (df[SUPERNET_METRIC].to_numpy(dtype=float) == 1.0)


def candidates(df: "pd.DataFrame") -> "pd.DataFrame":
    """Rows of a trials frame with a result that are candidates: completed or cached, and
    not a supernet run (whose values are those of the mixed network, not of a candidate).
    """
    return df[df["status"].isin(WITH_RESULT).to_numpy() & ~supernet_mask(df)]


def not_supernet(metrics: Any) -> Any:
    """SQL condition on a trials ``metrics`` JSON column: the trial is no supernet run."""
    return sa.func.coalesce(metrics[SUPERNET_METRIC].as_float(), 0.0) != 1.0


def supernet_summary(artifact: Mapping[str, Any] | None) -> str:
    """A supernet trial's summary: `SUPERNET_SUMMARY`, then the ``summary`` its evaluator
    wrote into its output artifact (each mixed decision's choice weights), if any."""
    text = str((artifact or {}).get("summary") or "").strip()
    return f"{SUPERNET_SUMMARY}: {text}" if text else \
        f"{SUPERNET_SUMMARY} (its architecture weights are in its output artifact)"


def describe_supernets(store: "Store", df: "pd.DataFrame") -> None:
    """Replaces the ``summary`` of a trials frame's supernet rows (in place): theirs
    described an architecture of the defaults that was never evaluated on its own.

    Reads the output artifact of those rows only (a few per sharpDARTS experiment).
    """
    mask = supernet_mask(df)
    if not mask.any() or "id" not in df.columns:
        return
    at = df.index[mask]
    df.loc[at, "summary"] = [supernet_summary(store.load_artifact(int(i), "output"))
                             for i in df.loc[at, "id"]]
