"""LINAS: predictor-guided multi-objective search (DyNAS-T; Cummings et al. 2022).

"A Hardware-Aware Framework for Accelerating Neural Architecture Search Across
Modalities": measure a population, fit a cheap predictor per objective on every
measurement so far, run NSGA-II on the predictors for thousands of candidate
evaluations, measure the candidates it ranks best, repeat.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyglove as pg

from memnas.algorithms._decisions import check_supported, from_unit
from memnas.algorithms._linas_parts import PREDICTORS, Cand, Layout, Predictor, nsga2_ranks, \
    random_decide
from memnas.algorithms.base import AlgorithmHooks
from memnas.algorithms.registry import register_algorithm
from memnas.constraints import INFEASIBLE_REWARD
from memnas.errors import ConfigError
from memnas.pareto import pareto_mask

__all__ = ["LINAS", "PREDICTORS", "linas"]

_MAX_REDRAWS = 64   # random draws tried for an unseen DNA before the space counts as exhausted
_INIT_TRIES = 8     # random draws per member of NSGA-II's initial population, at most


@pg.members([
    ("seed", pg.typing.Int().noneable(), "Seed of the random proposals, NSGA-II and regressors."),
    ("population", pg.typing.Int(default=10),
     "Random proposals first, and proposals per iteration (at least 2)."),
    ("num_evals", pg.typing.Int(default=2000),
     "Candidates each iteration's NSGA-II draws and rates on the predictors (at least 1)."),
    ("search_population", pg.typing.Int(default=50), "Population of that NSGA-II (at least 2)."),
])
class LINAS(pg.geno.DNAGenerator, AlgorithmHooks):
    """LINAS, lightweight iterative NAS (DyNAS-T; Cummings et al. 2022), multi-objective.

    The first ``population`` proposals are random. Once as many results are in, each
    iteration fits one predictor per objective on every (DNA, reward) fed back so far,
    picking among `PREDICTORS` by 3-fold error, and runs NSGA-II (uniform crossover
    and mutation over the decisions, non-dominated sort and crowding) for
    ``num_evals`` candidates on the predicted values; a measured candidate counts
    with its measured values, and the initial population is the measured front
    plus random candidates. Its final population, front first, then by rank and
    crowding (DyNAS-T measures the final population), gives the next ``population``
    proposals among the DNAs never proposed; random unseen ones fill up when fewer
    are left.

    - Features of a DNA: one-hot per choice, (unit value, 1) per float, zeros for
      decisions not made; and, for choices with the same candidates (a layer
      template repeated), a count of each candidate over them, so that what is
      learnt of a mixer in one layer carries over to the others. On the tabular v2
      benchmark (seeds 0-4, `experiments/linas_vs_nsga2.py`) they took the median
      evaluations to NSGA-II's 200-evaluation hypervolume from over 200 to 75.
    - Rewards are tuples, all components maximised (memnas negates "min" objectives).
      Rewards of trials that broke a constraint (`memnas.constraints.INFEASIBLE_REWARD`
      and below) and NaN ones rank last and are not learnt from.
    - `bind` names the objectives and gives the costs known before training:
      objectives among those costs are computed exactly, not predicted (`exact`;
      `predictors` names the regressor of each predicted one). They are asked for
      every distinct candidate NSGA-II rates (once each): through memnas each such
      call decodes the candidate, ~0.1 s on the tabular v2 space, which makes most
      of a tabular run's time (about 45 s for 100 trials there, random search 10 s).
    - Several proposals may be in flight: proposals come from the current
      iteration's queue; a new iteration (and fit) starts when it runs out.
    - Deterministic under a seed: the same calls give the same proposals. Nothing is
      proposed twice; `recover` (warm start, even with DNAs it never proposed) adds
      every DNA to those seen and every reward to the training data.
    """

    def _on_bound(self) -> None:
        super()._on_bound()
        for name, low in (("population", 2), ("num_evals", 1), ("search_population", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"linas: {name} must be an integer >= {low}, got {value!r}")
        self._objectives: dict[str, str] | None = None
        self._costs: Callable[[pg.DNA], Mapping[str, float]] | None = None
        self._exact: tuple[int, ...] | None = None

    @property
    def multi_objective(self) -> bool:
        return True

    # -- hooks ---------------------------------------------------------------------------
    def bind(self, objectives: Mapping[str, str],
             costs: Callable[[pg.DNA], Mapping[str, float]] | None) -> None:
        """Takes the objectives (reward order) and the costs known before training.

        Raises:
          ConfigError: fewer than two objectives.
        """
        objectives = dict(objectives)
        if len(objectives) < 2:
            raise ConfigError(f"linas searches a Pareto front and needs 2 or more objectives, "
                              f"got {objectives!r}")
        self._objectives, self._costs, self._exact = objectives, costs, None
        if self.dna_spec is not None:  # set up already (the driver binds after setup)
            self._num = len(objectives)
            self._exact_indices()

    @property
    def exact(self) -> tuple[str, ...]:
        """Objectives computed from the bound costs instead of predicted."""
        return tuple(self._names()[i] for i in self._exact_indices())

    @property
    def predictors(self) -> dict[str, str]:
        """The regressor of each predicted objective at the last fit ({} before one)."""
        names = self._names()
        return {names[i]: p.name for i, p in self._models.items()}

    # -- DNAGenerator --------------------------------------------------------------------
    def _setup(self) -> None:
        check_supported(self.dna_spec, "linas")
        self._layout = Layout(self.dna_spec)
        self._rng = random.Random(self.seed)
        self._seen: set[tuple] = set()
        # key -> (decisions, reward) of every DNA fed back: the predictors' training data
        self._data: dict[tuple, tuple[dict[str, Any], tuple[float, ...]]] = {}
        self._queue: list[Cand] = []
        self._models: dict[int, Predictor] = {}
        self._fed = 0          # rewards received
        self._fitted_on = -1   # ... when the predictors were last fitted
        self._iteration = 0
        self._num: int | None = len(self._objectives) if self._objectives else None
        self._cost_values: dict[tuple, tuple[float, ...]] = {}

    def _propose(self) -> pg.DNA:
        if not self._queue and len(self._data) >= self.population:
            self._iterate()
        while self._queue:
            key, _, node = self._queue.pop(0)
            if key not in self._seen:
                return self._emit(key, node)
        key, _, node = self._random_unseen(self._rng)
        return self._emit(key, node)

    def _feedback(self, dna: pg.DNA, reward: Any) -> None:
        values = self._values(reward)
        key, decisions, _ = self._layout.of(dna)
        self._seen.add(key)
        self._data[key] = (decisions, values)
        self._fed += 1

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        del trial_id
        self._seen.add(self._layout.of(dna)[0])
        if reward is not None:
            self._feedback(dna, reward)

    # -- helpers -------------------------------------------------------------------------
    def _emit(self, key: tuple, node: Any) -> pg.DNA:
        self._seen.add(key)
        return self._layout.dna(node)

    def _random_unseen(self, rng: random.Random) -> Cand:
        for _ in range(_MAX_REDRAWS):
            cand = self._layout.walk(random_decide(rng))
            if cand[0] not in self._seen:
                return cand
        raise StopIteration(f"linas: {_MAX_REDRAWS} random draws in a row were all proposed "
                            "already; the space looks exhausted")

    def _names(self) -> list[str]:
        if self._objectives:
            return list(self._objectives)
        return [f"objective_{i}" for i in range(self._num or 0)]

    def _values(self, reward: Any) -> tuple[float, ...]:
        values = tuple(float(v) for v in (reward if isinstance(reward, (tuple, list))
                                          else (reward,)))
        if len(values) < 2:
            raise ConfigError(f"linas is multi-objective; reward {reward!r} has "
                              f"{len(values)} objective(s), expected 2 or more")
        if self._num is not None and len(values) != self._num:
            raise ConfigError(f"linas: reward {reward!r} has {len(values)} objectives, "
                              f"expected {self._num} ({', '.join(self._names())})")
        self._num = len(values)
        return values

    def _exact_indices(self) -> tuple[int, ...]:
        """Indices of the objectives the bound costs give (probed once, on a fixed DNA)."""
        if self._exact is None:
            if self._costs is None or not self._objectives or self.dna_spec is None:
                return ()
            probe = self._layout.walk(lambda dp, allowed: allowed[0] if allowed is not None
                                      else dp.min_value)
            known = self._costs(self._layout.dna(probe[2]))
            self._exact = tuple(i for i, n in enumerate(self._objectives) if n in known)
        return self._exact

    def _exact_values(self, cand: Cand) -> tuple[float, ...]:
        """The exact objectives of ``cand``, signed as rewards (cached by key)."""
        key = cand[0]
        if key not in self._cost_values:
            costs = self._costs(self._layout.dna(cand[2]))
            names = self._names()
            self._cost_values[key] = tuple(
                float(costs[names[i]]) * (-1.0 if self._objectives[names[i]] == "min" else 1.0)
                for i in self._exact_indices())
        return self._cost_values[key]

    def _iterate(self) -> None:
        """Refits the predictors (when new results came in), runs NSGA-II, queues proposals."""
        self._iteration += 1
        base = self.seed if self.seed is not None else self._rng.getrandbits(31)
        rng = random.Random(base * 1_000_003 + self._iteration)
        if self._fitted_on != self._fed:
            self._fit(rng.getrandbits(31))
        ranked = self._nsga2(rng)
        queue: list[Cand] = []
        keys: set[tuple] = set()
        for cand in ranked:
            if cand[0] not in self._seen and cand[0] not in keys and len(queue) < self.population:
                queue.append(cand)
                keys.add(cand[0])
        while len(queue) < self.population:
            try:
                cand = self._random_unseen(rng)
            except StopIteration:
                break
            if cand[0] not in keys:
                queue.append(cand)
                keys.add(cand[0])
        self._queue = queue

    def _fit(self, seed: int) -> None:
        exact = set(self._exact_indices())
        rows = list(self._data.values())
        x = np.stack([self._layout.features(d) for d, _ in rows])
        y = np.array([v for _, v in rows], dtype=float)
        feasible = (y > INFEASIBLE_REWARD).all(axis=1)  # a penalty is no value to learn
        self._models = {}
        for i in range(y.shape[1]):
            if i not in exact:
                ok = np.isfinite(y[:, i]) & feasible
                self._models[i] = Predictor(x[ok], y[ok, i], seed) if ok.any() \
                    else Predictor(x[:1], np.zeros(1), seed)
        self._fitted_on = self._fed

    def _evaluate(self, cands: Sequence[Cand]) -> np.ndarray:
        """Objective values of candidates: measured where known, else predicted or exact."""
        out = np.zeros((len(cands), self._num))
        new = [j for j, c in enumerate(cands) if c[0] not in self._data]
        for j, c in enumerate(cands):
            if c[0] in self._data:
                out[j] = self._data[c[0]][1]
        if new:
            x = np.stack([self._layout.features(cands[j][1]) for j in new])
            for i, model in self._models.items():
                out[new, i] = model.predict(x)
            exact = list(self._exact_indices())
            if exact:
                out[np.ix_(new, exact)] = [self._exact_values(cands[j]) for j in new]
        return np.nan_to_num(out, nan=-1e300)

    def _nsga2(self, rng: random.Random) -> list[Cand]:
        """NSGA-II on the predictors; its final population, best ranked first."""
        size = self.search_population
        measured = [(k, d) for k, (d, _) in self._data.items()]
        mvals = np.array([v for _, v in self._data.values()], dtype=float)
        front = np.nonzero(pareto_mask(np.nan_to_num(mvals, nan=-1e300),
                                       ["max"] * self._num))[0][: size // 2]
        pop: list[Cand] = []
        keys: set[tuple] = set()
        for j in front:
            key, decisions = measured[j]
            pop.append((key, decisions, None))
            keys.add(key)
        for _ in range(size * _INIT_TRIES):
            if len(pop) >= size:
                break
            cand = self._layout.walk(random_decide(rng))
            if cand[0] not in keys:
                pop.append(cand)
                keys.add(cand[0])
        values = self._evaluate(pop)
        drawn = len(pop)
        pm = 1.0 / max(1, len(self._layout.offsets))
        while drawn < self.num_evals:
            rank, crowd = nsga2_ranks(values)
            kids: list[Cand] = []
            for _ in range(min(size, self.num_evals - drawn)):
                drawn += 1
                a, b = (pop[self._tournament(rank, crowd, rng)][1] for _ in range(2))
                child = self._layout.walk(self._breed(a, b, pm, rng))
                if child[0] not in keys:  # a repeat counts as drawn, not evaluated again
                    kids.append(child)
                    keys.add(child[0])
            if not kids:
                continue
            pop, values = pop + kids, np.concatenate([values, self._evaluate(kids)])
            rank, crowd = nsga2_ranks(values)
            keep = sorted(range(len(pop)), key=lambda j: (rank[j], -crowd[j]))[:size]
            pop, values = [pop[j] for j in keep], values[keep]
            keys = {c[0] for c in pop}
        rank, crowd = nsga2_ranks(values)
        order = sorted(range(len(pop)), key=lambda j: (rank[j], -crowd[j]))
        # measured individuals carry no node; they are seen, so never proposed
        return [pop[j] for j in order if pop[j][2] is not None]

    @staticmethod
    def _tournament(rank: np.ndarray, crowd: np.ndarray, rng: random.Random) -> int:
        i, j = rng.randrange(len(rank)), rng.randrange(len(rank))
        return i if (rank[i], -crowd[i]) <= (rank[j], -crowd[j]) else j

    @staticmethod
    def _breed(a: Mapping[str, Any], b: Mapping[str, Any], pm: float,
               rng: random.Random) -> Callable[[Any, list | None], Any]:
        """Uniform crossover of parents ``a`` and ``b``, then uniform mutation (rate ``pm``)."""
        def decide(dp: Any, allowed: list | None) -> Any:
            if rng.random() >= pm:
                first, second = (a, b) if rng.random() < 0.5 else (b, a)
                for parent in (first, second):
                    v = parent.get(str(dp.id))
                    if v is not None and (allowed is None or v in allowed):
                        return v
            return rng.choice(allowed) if allowed is not None else from_unit(dp, rng.random())
        return decide


@register_algorithm("linas")
def linas(seed: int | None = None, population: int = 10, num_evals: int = 2000,
          search_population: int = 50) -> LINAS:
    """LINAS, predictor-guided multi-objective search (DyNAS-T); takes a tuple reward.

    Args:
      seed: Seed of the random proposals, the NSGA-II and the regressors.
      population: Random proposals first, then proposals per iteration (>= 2).
      num_evals: Candidates NSGA-II draws and rates on the predictors per iteration (>= 1).
      search_population: Population of each iteration's NSGA-II (>= 2).
    """
    return LINAS(seed=seed, population=population, num_evals=num_evals,
                 search_population=search_population)
