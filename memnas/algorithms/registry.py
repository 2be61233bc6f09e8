"""The algorithm registry: factories found by name, and `make_algorithm` to build one."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg

from memnas.errors import ConfigError

__all__ = ["ALGORITHMS", "make_algorithm", "register_algorithm"]

Factory = Callable[..., pg.geno.DNAGenerator]

ALGORITHMS: dict[str, Factory] = {}
"""Registered factories ``(seed=None, **options) -> pg.geno.DNAGenerator``, by name."""


def register_algorithm(name: str) -> Callable[[Factory], Factory]:
    """Decorator: registers a factory ``(seed=None, **options) -> pg.geno.DNAGenerator``.

    Args:
      name: The name users pass as ``Experiment(algorithm=name)``; a later
        registration under the same name replaces the earlier one.

    Returns:
      A decorator that registers the factory and returns it unchanged.
    """

    def deco(factory: Factory) -> Factory:
        ALGORITHMS[name] = factory
        return factory

    return deco


def make_algorithm(algorithm: Any, seed: int | None = None,
                   **options: Any) -> pg.geno.DNAGenerator:
    """Returns a fresh DNA generator for a registered name or a given generator.

    Args:
      algorithm: a registered name ("random", "evolution", "nsga2", ...) or a
        ``pg.geno.DNAGenerator`` (cloned, so the caller's object stays unset-up).
      seed: seed passed to a named algorithm's factory.
      **options: further keyword options for a named algorithm's factory.

    Raises:
      ConfigError: unknown name, or an object that is not a DNA generator.
    """
    if isinstance(algorithm, str):
        factory = ALGORITHMS.get(algorithm)
        if factory is None:
            raise ConfigError(f"unknown algorithm {algorithm!r}; expected one of "
                              f"{sorted(ALGORITHMS)} or a pg.geno.DNAGenerator")
        try:
            return factory(seed=seed, **options)
        except TypeError as e:
            raise ConfigError(f"bad options {options!r} for algorithm {algorithm!r}: {e}") from None
    if isinstance(algorithm, pg.geno.DNAGenerator):
        return algorithm.clone(deep=True)
    raise ConfigError(f"algorithm must be a name in {sorted(ALGORITHMS)} or a "
                      f"pg.geno.DNAGenerator, got {type(algorithm).__name__}: {algorithm!r:.80}")
