"""Search algorithms: PyGlove DNA generators, found by name through a small registry."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg

from memnas.errors import ConfigError

__all__ = ["ALGORITHMS", "make_algorithm", "random_search", "regularized_evolution", "nsga2",
           "register_algorithm", "MCTS", "mcts", "OptunaSampler"]

ALGORITHMS: dict[str, Callable[..., pg.geno.DNAGenerator]] = {}


def register_algorithm(name: str) -> Callable:
    """Decorator: registers a factory ``(seed=None, **options) -> pg.DNAGenerator``."""

    def deco(factory: Callable[..., pg.geno.DNAGenerator]) -> Callable:
        ALGORITHMS[name] = factory
        return factory

    return deco


class _Random(pg.geno.Random):
    """``pg.geno.Random``, drawing each DNA with `_random_dna` where the space allows.

    Same draws in the same order as ``pg.geno.Random`` for the same seed (a test holds
    them equal), at a third of the cost: see `_random_dna`.
    """

    def _setup(self) -> None:
        super()._setup()
        self._fast = not any(isinstance(d, pg.geno.CustomDecisionPoint)
                             for d in self._dna_spec.decision_points)

    def _propose(self) -> pg.DNA:
        if not self._fast:  # custom decision points draw with their own functions
            return pg.random_dna(self._dna_spec, self._random)
        return _random_dna(self._dna_spec, self._random)

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        if self.seed is not None:  # as pg.geno.Random: redraw to move the stream on
            self._propose()


def _random_dna(spec: pg.DNASpec, rng: Any) -> pg.DNA:
    """``pg.random_dna(spec, rng)`` for spaces of choices and floats, built faster.

    Written by hand because PyGlove's builds a DNA object for every node of the walk
    (five for two decisions) and normalises them away, each with type checks, about
    1.3 ms a proposal: most of a no-op trial's cost in memnas. This draws with the same
    random calls in the same order, normalises plain tuples as `pg.DNA` does, and
    builds only the final nodes with type checks off (they are valid by construction):
    about 0.4 ms. Not for spaces with custom decision points.
    """
    node = _draw(spec, rng)
    with pg.enable_type_check(False):
        dna = _build(node)
    dna.use_spec(spec)
    return dna


def _draw(spec: Any, rng: Any) -> tuple[Any, list]:
    """A random draw as ``(value, children)`` tuples, normalised like `pg.DNA`."""
    if isinstance(spec, pg.geno.Space):
        return _norm(None, [_draw(e, rng) for e in spec.elements])
    if isinstance(spec, pg.geno.Choices):
        n = len(spec.candidates)
        if spec.distinct:
            picks = rng.sample(list(range(n)), spec.num_choices)
        else:
            picks = [rng.randint(0, n - 1) for _ in range(spec.num_choices)]
        if spec.sorted:
            picks = sorted(picks)
        return _norm(None, [_norm(c, [_draw(spec.candidates[c], rng)]) for c in picks])
    if isinstance(spec, pg.geno.Float):
        return rng.uniform(spec.min_value, spec.max_value), []
    raise TypeError(f"cannot draw a random value for {type(spec).__name__}")


def _norm(value: Any, kids: list) -> tuple[Any, list]:
    """`pg.DNA`'s normalisation: drop an empty node over one child, hoist a lone
    valueless child's children."""
    if len(kids) == 1 and kids[0][0] is None:
        kids = kids[0][1]
    if value is None and len(kids) == 1:
        return kids[0]
    return value, kids


def _build(node: tuple[Any, list]) -> pg.DNA:
    value, kids = node
    return pg.DNA(value, [_build(k) for k in kids])


@register_algorithm("random")
def random_search(seed: int | None = None) -> pg.geno.DNAGenerator:
    """Uniform random search (PyGlove's ``pg.geno.Random``)."""
    return _Random(seed=seed)


@register_algorithm("evolution")
def regularized_evolution(seed: int | None = None, population_size: int = 16,
                          tournament_size: int = 4) -> pg.geno.DNAGenerator:
    """Regularized (aging) evolution, Real et al. 2019 (PyGlove's implementation).

    Defaults are sized for searches of tens to hundreds of trials; PyGlove's own
    defaults (100/10) suit thousands.
    """
    return pg.evolution.regularized_evolution(
        mutator=pg.evolution.mutators.Uniform(seed=seed), population_size=population_size,
        tournament_size=tournament_size, seed=seed)


@register_algorithm("nsga2")
def nsga2(seed: int | None = None, population_size: int = 16) -> pg.geno.DNAGenerator:
    """NSGA-II, Deb et al. 2002 (PyGlove's implementation); takes a tuple reward."""
    return pg.evolution.nsga2(mutator=pg.evolution.mutators.Uniform(seed=seed),
                              population_size=population_size, seed=seed)


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


# Registration on import; these modules need register_algorithm, defined above.
from memnas.algorithms.mcts import MCTS, mcts  # noqa: E402
from memnas.algorithms.optuna_sampler import OptunaSampler  # noqa: E402


# sharpDARTS builds torch supernets: its module (and torch) load on first use, so that
# choosing any other algorithm does not pay torch's import (~0.8 s).
@register_algorithm("sharp_darts")
def sharp_darts(seed: int | None = None, **options: Any) -> pg.geno.DNAGenerator:
    """sharpDARTS, differentiable weight-sharing search (see `memnas.algorithms.darts`)."""
    from memnas.algorithms.darts import sharp_darts as factory

    return factory(seed=seed, **options)


def __getattr__(name: str) -> Any:
    if name in ("SharpDARTS", "SupernetEvaluator"):
        from memnas.algorithms import darts

        return getattr(darts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += ["SharpDARTS", "SupernetEvaluator", "sharp_darts"]
from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space  # noqa: E402

__all__ += ["LotteryTicketIMP", "lottery_space"]
