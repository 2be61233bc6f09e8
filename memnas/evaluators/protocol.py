"""The Zoology/MAD protocol: a learning-rate sweep per candidate, comparisons at matched size."""

from __future__ import annotations

import math
import numbers
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from memnas.measurement import Measurement
from memnas.records import SUPERNET_METRIC, WITH_RESULT

if TYPE_CHECKING:
    import pandas as pd

SWEEP_METRICS = ("accuracy", "loss")
"""What `best_of_sweep` picks the best run by: highest ``accuracy`` or lowest ``loss``."""

_MIXER_COLUMN = re.compile(r"^layers\[\d+\]\.mixer$")


def check_lr_sweep(values: Any) -> tuple[float, ...]:
    """Validates a learning-rate sweep and returns it as a tuple of floats.

    Args:
      values: Learning rates (a tuple, list or 1-d array): distinct, finite and
        positive; may be empty.

    Raises:
      ValueError: a value that is no positive finite number, a repeated value, or
        ``values`` not a collection of numbers.
    """
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValueError(f"lr_sweep must be a tuple of learning rates, got {values!r}")
    out: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"lr_sweep values must be positive finite numbers, got {value!r}")
        if float(value) in out:
            raise ValueError(f"lr_sweep values must differ, got {value!r} twice")
        out.append(float(value))
    return tuple(out)


def check_sweep_metric(metric: Any) -> str:
    """Validates a sweep's selection metric (one of `SWEEP_METRICS`) and returns it.

    Raises:
      ValueError: anything else, named.
    """
    if metric not in SWEEP_METRICS:
        raise ValueError(f"sweep_metric must be 'accuracy' or 'loss', got {metric!r}")
    return str(metric)


def sweep_prefix(lr: float) -> str:
    """The curve-name prefix of the run at learning rate ``lr``, e.g. ``"lr=0.003/"``."""
    return f"lr={float(lr)!r}/"


def best_of_sweep(
    lrs: Sequence[float], runs: Sequence[Measurement], metric: str = "accuracy"
) -> Measurement:
    """One `Measurement` from the runs of a learning-rate sweep: the best run's, plus each run's.

    The best run has the highest held-out ``accuracy`` (ties: the lower ``loss``) or,
    with ``metric="loss"``, the lowest ``loss`` (ties: the higher ``accuracy``). A run
    whose loss is not finite (it diverged) ranks below every other, whatever its
    accuracy; among equals the earlier run wins. Its metrics and costs are
    returned, with ``best_lr`` and, for the ``i``-th run, ``lr_<i>`` (its learning
    rate), ``accuracy_lr_<i>`` and ``loss_lr_<i>`` (held-out; a non-finite value, as
    of a diverged run, is left out, so that it does not fail the trial). The curve
    is every run's, in order.

    Args:
      lrs: The learning rates, in the order of ``runs``.
      runs: One measurement per learning rate, each with ``accuracy`` and ``loss``.
      metric: ``"accuracy"`` or ``"loss"``.

    Raises:
      ValueError: no runs, a length mismatch, or a bad ``metric``.
    """
    metric = check_sweep_metric(metric)
    if not runs or len(runs) != len(lrs):
        raise ValueError(f"best_of_sweep needs one run per learning rate, got {len(runs)} runs "
                         f"for lrs {tuple(lrs)!r}")

    def key(i: int) -> tuple[bool, float, float]:  # larger is better; non-finite is -inf
        acc, loss = (_finite(runs[i].metrics[k]) for k in ("accuracy", "loss"))
        acc_score = -math.inf if acc is None else acc
        loss_score = -math.inf if loss is None else -loss
        ranked = (acc_score, loss_score) if metric == "accuracy" else (loss_score, acc_score)
        return (loss is not None, *ranked)

    best = max(range(len(runs)), key=key)
    metrics = dict(runs[best].metrics)
    metrics["best_lr"] = float(lrs[best])
    for i, (lr, run) in enumerate(zip(lrs, runs)):
        metrics[f"lr_{i}"] = float(lr)
        for name in ("accuracy", "loss"):
            value = _finite(run.metrics[name])
            if value is not None:
                metrics[f"{name}_lr_{i}"] = value
    curve = [point for run in runs for point in run.curve]
    return Measurement(metrics=metrics, costs=dict(runs[best].costs), curve=curve)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def family_of(summary: str) -> str:
    """The mixer family of a `SequenceModel` summary: its mixers' kinds, sorted, once each.

    ``"d=32 | linear(h=1,elu+1) > attn(h=2) | mlp x2"`` gives ``"attn+linear"``,
    ``"d=32 | attn(h=2) > attn(h=4) | mlp x2"`` gives ``"attn"``: a hybrid's family
    does not depend on the order of its layers. Any other text is its own family
    (returned stripped).

    Raises:
      ValueError: ``summary`` is not a string.
    """
    if not isinstance(summary, str):
        raise ValueError(f"a summary must be a string, got {summary!r}")
    parts = summary.split(" | ")
    if len(parts) < 3 or not parts[0].startswith("d="):
        return summary.strip()
    return "+".join(sorted({mixer.split("(", 1)[0].strip() for mixer in parts[1].split(" > ")}))


def compare_at_matched(
    df: "pd.DataFrame",
    by: str = "params",
    metric: str = "accuracy",
    family: str | Callable[[Any], Any] | None = None,
    bins: int | Sequence[float] = 6,
    mode: str = "max",
) -> "pd.DataFrame":
    """The best ``metric`` per mixer family within log-spaced bins of ``by``.

    Compares architectures at matched parameters (``by="params"``) or matched state
    size (``by="state_bytes"``), as Zoology and MAD do: within each bin of ``by``,
    each family's best trial. Takes a `memnas.Result.trials` frame (its candidates
    only: completed or cached, no supernet run) or any frame with the columns.
    Rows without a finite ``by`` or ``metric`` are dropped. For one column per
    family: ``out.pivot(index="lo", columns="family", values=metric)``.

    Args:
      df: One row per trial.
      by: The size column, positive (e.g. ``"params"``, ``"state_bytes"``).
      metric: The score column.
      family: A column naming each row's family, or a function of a row (a pandas
        Series) giving it. Default: the mixers chosen in the decision columns
        ``layers[<i>].mixer``, sorted, once each, joined by ``+`` (e.g.
        ``"Mamba+SoftmaxAttention"`` for any hybrid of the two); where a row has
        none, `family_of` its ``summary``.
      bins: A number of log-spaced bins spanning the values of ``by``, or the bin
        edges (increasing, positive; rows outside them are dropped). A bin holds
        ``lo <= value < hi``, the last one ``hi`` too.
      mode: ``"max"`` or ``"min"``: which ``metric`` value is best.

    Returns:
      One row per (bin, family) with trials, ordered by bin then best first: ``lo``
      and ``hi`` (the bin's edges), ``family``, ``metric`` (the best value), ``by``
      (that trial's size), ``number`` (that trial's number, or its index label when
      ``df`` has no ``number`` column) and ``count`` (the rows in the cell).

    Raises:
      ValueError: a missing column, a bad ``bins`` or ``mode``, or a non-positive size.
    """
    import numpy as np
    import pandas as pd

    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    for column in (by, metric):
        if column not in df.columns:
            raise ValueError(f"column {column!r} is not in the frame (columns: {list(df.columns)})")
    _edges(bins, 1.0, 1.0)  # validates bins before any row is looked at
    if isinstance(family, str) and family not in df.columns:
        raise ValueError(f"family column {family!r} is not in the frame")
    if family is not None and not isinstance(family, str) and not callable(family):
        raise ValueError(f"family must be a column name or a function of a row, got {family!r}")
    rows = df
    if "status" in rows.columns:
        rows = rows[rows["status"].isin(WITH_RESULT)]
    if SUPERNET_METRIC in rows.columns:
        rows = rows[rows[SUPERNET_METRIC].to_numpy(dtype=float) != 1.0]
    size = pd.to_numeric(rows[by], errors="coerce").to_numpy(dtype=float)
    score = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(size) & np.isfinite(score)
    rows, size, score = rows[keep], size[keep], score[keep]
    if (size <= 0).any():
        bad = float(size[size <= 0][0])
        raise ValueError(f"{by} must be positive to bin on a log scale, got {bad!r}")
    columns = ["lo", "hi", "family", metric, by, "number", "count"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    edges = _edges(bins, float(size.min()), float(size.max()))
    inside = (size >= edges[0]) & (size <= edges[-1])
    rows, size, score = rows[inside], size[inside], score[inside]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    index = np.clip(np.searchsorted(edges, size, side="right") - 1, 0, len(edges) - 2)
    labels = rows["number"].to_numpy() if "number" in rows.columns else rows.index.to_numpy()
    table = pd.DataFrame({"bin": index, "family": _families(rows, family), "score": score,
                          "size": size, "number": labels})
    table = table.sort_values(["bin", "score"], ascending=[True, mode == "min"], kind="stable")
    grouped = table.groupby(["bin", "family"], sort=False)
    best = grouped.head(1).set_index(["bin", "family"])
    best["count"] = grouped.size()
    best = best.reset_index()
    return pd.DataFrame({
        "lo": edges[best["bin"].to_numpy()], "hi": edges[best["bin"].to_numpy() + 1],
        "family": best["family"], metric: best["score"], by: best["size"],
        "number": best["number"], "count": best["count"].astype(int),
    }, columns=columns).reset_index(drop=True)


def _edges(bins: Any, lo: float, hi: float) -> Any:
    import numpy as np

    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of bins or bin edges, got {bins!r}")
        if lo == hi:
            return np.array([lo, hi])
        # Edges to 12 digits: 2000.0000000000002 would put 2000 in the bin below.
        edges = np.array([float(f"{e:.12g}") for e in np.geomspace(lo, hi, int(bins) + 1)])
        edges[0], edges[-1] = lo, hi
        return edges
    try:
        edges = np.asarray(bins, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"bins must be a positive number of bins or bin edges, got {bins!r}") \
            from None
    if edges.ndim != 1 or len(edges) < 2 or not np.isfinite(edges).all() or edges[0] <= 0 \
            or (np.diff(edges) <= 0).any():
        raise ValueError(f"bin edges must be at least two increasing positive numbers, "
                         f"got {bins!r}")
    return edges


def _families(rows: "pd.DataFrame", family: str | Callable[[Any], Any] | None) -> list[str]:
    if isinstance(family, str):
        return [str(v) for v in rows[family]]
    if family is not None:
        return [str(family(row)) for _, row in rows.iterrows()]
    layered = [c for c in rows.columns if _MIXER_COLUMN.match(str(c))]
    out = []
    for _, row in rows.iterrows():
        kinds = sorted({v for v in row[layered] if isinstance(v, str) and v})
        if not kinds and "summary" not in rows.columns:
            raise ValueError(f"row {row.name!r} has no layers[<i>].mixer decision and the "
                             "frame no summary column: pass family=")
        out.append("+".join(kinds) if kinds else family_of(str(row["summary"])))
    return out
