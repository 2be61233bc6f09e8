"""Evolutionary search by name: regularized evolution and NSGA-II (PyGlove's implementations)."""

from __future__ import annotations

import pyglove as pg

from memnas.algorithms.registry import register_algorithm

__all__ = ["nsga2", "regularized_evolution"]


@register_algorithm("evolution")
def regularized_evolution(seed: int | None = None, population_size: int = 16,
                          tournament_size: int = 4) -> pg.geno.DNAGenerator:
    """Regularized (aging) evolution, Real et al. 2019 (PyGlove's implementation).

    Defaults are sized for searches of tens to hundreds of trials; PyGlove's own
    defaults (100/10) suit thousands.

    Args:
      seed: Seed of the mutator and the selection.
      population_size: Individuals kept (the oldest dies as each child is added).
      tournament_size: Individuals sampled per tournament to pick a parent.
    """
    return pg.evolution.regularized_evolution(
        mutator=pg.evolution.mutators.Uniform(seed=seed), population_size=population_size,
        tournament_size=tournament_size, seed=seed)


@register_algorithm("nsga2")
def nsga2(seed: int | None = None, population_size: int = 16) -> pg.geno.DNAGenerator:
    """NSGA-II, Deb et al. 2002 (PyGlove's implementation); takes a tuple reward.

    Args:
      seed: Seed of the mutator and the selection.
      population_size: Individuals kept per generation.
    """
    return pg.evolution.nsga2(mutator=pg.evolution.mutators.Uniform(seed=seed),
                              population_size=population_size, seed=seed)
