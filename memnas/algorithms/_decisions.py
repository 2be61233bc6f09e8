"""Helpers shared by algorithms that make a DNA spec's decisions one at a time."""

from __future__ import annotations

import math

import pyglove as pg

from memnas.errors import ConfigError


def check_supported(dna_spec: pg.DNASpec, algorithm: str) -> None:
    """Raises ConfigError unless every decision point is a `oneof`/`manyof` or a `floatv`.

    Args:
      dna_spec: the search space's DNA spec.
      algorithm: the algorithm's name, for the message.
    """
    for dp in dna_spec.decision_points:
        if not isinstance(dp, (pg.geno.Choices, pg.geno.Float)):
            raise ConfigError(f"{algorithm} handles oneof/manyof/floatv decisions only, got "
                              f"{type(dp).__name__} at {str(dp.id) or '(root)'!r}: {dp!r:.120}")


def allowed_choices(choices: pg.geno.Choices, picks: list[int]) -> list[int]:
    """Candidate indices the next sub-choice of a (`manyof`) Choices may take.

    ``picks`` are the indices already chosen by the earlier sub-choices; the
    Choices' ``distinct`` and ``sorted`` flags decide what remains, leaving room for
    the sub-choices still to come (sorted and distinct needs k distinct ascending).
    """
    n, k, i = len(choices.candidates), choices.num_choices, len(picks)
    if choices.num_choices == 1:
        return list(range(n))
    low = 0
    if choices.sorted and picks:
        low = picks[-1] + (1 if choices.distinct else 0)
    high = n - (k - i - 1) if (choices.sorted and choices.distinct) else n
    taken = set(picks) if choices.distinct else set()
    return [c for c in range(low, high) if c not in taken]


def to_unit(dp: pg.geno.Float, value: float) -> float:
    """Maps a float decision's value to [0, 1] (in log space for ``scale='log'``)."""
    lo, hi = dp.min_value, dp.max_value
    if hi <= lo:
        return 0.0
    if dp.scale == "log" and lo > 0:
        u = (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    else:
        u = (value - lo) / (hi - lo)
    return min(max(u, 0.0), 1.0)


def from_unit(dp: pg.geno.Float, u: float) -> float:
    """Inverse of `to_unit`: a point of [0, 1] to a value inside the decision's range."""
    lo, hi = dp.min_value, dp.max_value
    if dp.scale == "log" and lo > 0:
        value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    else:
        value = lo + u * (hi - lo)
    return float(min(max(value, lo), hi))


def dna_key(dna: pg.DNA) -> tuple:
    """A hashable key of a DNA's decisions (its flat numbers, DFS order)."""
    return tuple(dna.to_numbers())
