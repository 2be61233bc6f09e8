"""How trial records are derived: rewards, seeds, DNA round trips, summaries."""

from __future__ import annotations

import copy
from typing import Any

import pyglove as pg

__all__ = ["dna_from_json", "reward_of", "summary_of", "trial_seed"]


def reward_of(values: dict[str, float], objectives: dict[str, str],
              multi_objective: bool) -> float | tuple[float, ...]:
    """The reward an algorithm maximises: objectives signed so that larger is better.

    Multi-objective algorithms get a tuple in objectives order; single-objective ones
    the first objective.
    """
    signed = [values[k] if d == "max" else -values[k] for k, d in objectives.items()]
    return tuple(signed) if multi_objective else signed[0]


def trial_seed(base: int, number: int) -> int:
    """The seed of trial ``number``: distinct per trial, reproducible per experiment."""
    return (base * 1_000_003 + number * 7_919 + 17) % (2**31 - 1)


def dna_from_json(value: Any, spec: pg.DNASpec) -> pg.DNA:
    """Rebuilds a stored DNA (``pg.to_json`` form) against the space's spec."""
    # pg.from_json consumes the dict it is given: hand it a copy.
    dna = pg.from_json(copy.deepcopy(value)) if isinstance(value, dict) else pg.DNA(value)
    return dna.use_spec(spec)


def summary_of(candidate: Any) -> str:
    """A short human-readable description of a candidate (its ``summary()`` if any)."""
    fn = getattr(candidate, "summary", None)
    if callable(fn):
        try:
            return str(fn())
        except Exception:  # a summary is a nicety; fall back to the symbolic form
            pass
    text = pg.format(candidate, compact=True) if isinstance(candidate, pg.Symbolic) else repr(candidate)
    return text if len(text) <= 300 else text[:297] + "..."
