"""Registered factories whose algorithm modules load on first use (sharpDARTS needs torch)."""

from __future__ import annotations

from typing import Any

import pyglove as pg

from memnas.algorithms.registry import register_algorithm


# sharpDARTS builds torch supernets: its module (and torch) load on first use, so that
# choosing any other algorithm does not pay torch's import (~0.8 s).
@register_algorithm("sharp_darts")
def sharp_darts(seed: int | None = None, **options: Any) -> pg.geno.DNAGenerator:
    """sharpDARTS, differentiable weight-sharing search (see `memnas.algorithms.darts`).

    Args:
      seed: Unused by the algorithm (the supernet's seed is its trial's seed).
      **options: `SharpDARTS` fields.
    """
    from memnas.algorithms.darts import SharpDARTS

    return SharpDARTS(seed=seed, **options)
