"""Pareto fronts and hypervolume over trial metrics, O(n log n) for two objectives."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

DIRECTIONS = ("max", "min")


def check_objectives(objectives: Mapping[str, str]) -> dict[str, str]:
    """Validates ``{"metric": "max"|"min"}`` and returns it as a plain dict.

    Raises:
      ValueError: empty objectives or a direction other than "max"/"min".
    """
    if isinstance(objectives, str) or not isinstance(objectives, Mapping) or not objectives:
        raise ValueError(f"objectives must be a non-empty dict like {{'accuracy': 'max'}}, "
                         f"got {objectives!r}")
    out = {}
    for name, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r} has direction {direction!r}; "
                             "expected 'max' or 'min'")
        out[str(name)] = direction
    return out


def _to_min(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flips maximised columns so that every column is minimised."""
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n x k).

    Rows with a NaN are never on the front. Two objectives take O(n log n): sort by
    the first, sweep keeping the best second seen; more objectives use a
    pairwise sweep over the candidates left after sorting.
    """
    v = _to_min(np.atleast_2d(values), directions)
    n = v.shape[0]
    mask = np.zeros(n, dtype=bool)
    ok = ~np.isnan(v).any(axis=1)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return mask
    v_ok = v[idx]
    order = np.lexsort(v_ok.T[::-1])  # by first column, ties by the next ones
    if v.shape[1] == 1:
        best = v_ok[order[0], 0]
        mask[idx[v_ok[:, 0] == best]] = True
        return mask
    if v.shape[1] == 2:
        best_y = np.inf
        prev = None
        for i in order:
            x, y = v_ok[i]
            if y < best_y:
                mask[idx[i]] = True
                best_y = y
                prev = (x, y)
            elif prev is not None and x == prev[0] and y == prev[1]:
                mask[idx[i]] = True  # exact duplicates of a front point stay on it
        return mask
    front: list[int] = []
    for i in order:
        p = v_ok[i]
        dominated = False
        for j in front:
            q = v_ok[j]
            if np.all(q <= p) and np.any(q < p):
                dominated = True
                break
        if not dominated:
            front.append(i)
    mask[idx[front]] = True
    return mask


def hypervolume_2d(values: np.ndarray, directions: Sequence[str],
                   reference: Sequence[float]) -> float:
    """Area dominated by the points of ``values`` (n x 2) up to ``reference``.

    ``reference`` is given in the objectives' own units and directions (for a
    maximised objective, a value below every point of interest).
    """
    v = _to_min(np.atleast_2d(values), directions)
    ref = _to_min(np.asarray([reference], dtype=float), directions)[0]
    v = v[~np.isnan(v).any(axis=1)]
    v = v[(v[:, 0] < ref[0]) & (v[:, 1] < ref[1])]
    if v.size == 0:
        return 0.0
    front = v[pareto_mask(v, ["min", "min"])]
    front = front[np.argsort(front[:, 0])]
    area, prev_y = 0.0, ref[1]
    for x, y in front:
        if y < prev_y:
            area += (ref[0] - x) * (prev_y - y)
            prev_y = y
    return float(area)
