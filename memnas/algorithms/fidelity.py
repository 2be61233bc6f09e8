"""Multi-fidelity in memnas's own driver: promotion-type ASHA, Hyperband brackets, MO-ASHA.

`SuccessiveHalving` wraps any memnas algorithm as the proposer of new candidates: random
gives ASHA (Li et al. 2020), TPE a BOHB-like search, evolution a successive-halving
evolution. Each rung evaluation is a trial at a budget (`memnas.algorithms.base.Rung`);
a promoted candidate is proposed again at the next rung and resumes the checkpoint of
the trial it continues. Written here rather than taken from Ray Tune or Syne Tune
because their schedulers own the loop and the trials: here a rung is a memnas trial,
stored, cached and replayed on resume like any other.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Mapping, Sequence

import numpy as np
import pyglove as pg

from memnas.algorithms.base import AlgorithmHooks, Rung
from memnas.algorithms.registry import make_algorithm, register_algorithm
from memnas.errors import ConfigError
from memnas.pareto import pareto_mask

__all__ = ["SuccessiveHalving", "asha", "hyperband", "mo_asha", "rung_budgets"]


def rung_budgets(min_budget: float, max_budget: float, eta: int) -> list[float]:
    """The rungs' budgets: ``min_budget * eta**k`` below ``max_budget``, then ``max_budget``.

    Raises:
      ConfigError: bounds that are not ``0 < min_budget < max_budget`` or ``eta < 2``.
    """
    for name, v in (("min_budget", min_budget), ("max_budget", max_budget)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v <= 0:
            raise ConfigError(f"{name} must be a positive number, got {v!r}")
    if min_budget >= max_budget:
        raise ConfigError(f"min_budget ({min_budget!r}) must be below max_budget "
                          f"({max_budget!r})")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"eta must be an integer >= 2, got {eta!r}")
    out, b = [], float(min_budget)
    while b < max_budget * (1 - 1e-9):
        out.append(b)
        b *= eta
    return out + [float(max_budget)]


@dataclasses.dataclass
class _Entry:
    """One proposal: a candidate at a rung of a bracket."""

    index: int                 # proposal number (0-based)
    key: int                   # the candidate (index of its bottom-rung proposal)
    bracket: int
    rung: int
    parent: pg.DNA | None      # the DNA object of the proposal it continues
    reward: Any = None         # None until fed back
    promoted: bool = False
    dna: pg.DNA | None = None  # its own DNA object


@pg.members([
    ("proposer", pg.typing.Any(), "The algorithm proposing new candidates: a registered "
     "name or a pg.geno.DNAGenerator."),
    ("min_budget", pg.typing.Any(default=1), "Budget of the lowest rung."),
    ("max_budget", pg.typing.Any(default=9), "Budget of the top rung."),
    ("eta", pg.typing.Any(default=3), "Reduction factor: the top 1/eta of a rung goes up."),
    ("budget_key", pg.typing.Str(default="steps"), "The ctx.budget key rungs set."),
    ("brackets", pg.typing.Any(default=1), "Hyperband brackets (1: ASHA)."),
    ("multi_objective_promotion", pg.typing.Bool(default=False),
     "Rank rungs by non-dominated sorting and crowding (MO-ASHA); rewards are tuples."),
    ("seed", pg.typing.Int().noneable(), "Seed of the proposer and of bracket draws."),
    ("proposer_options", pg.typing.Dict().noneable(), "Options of a named proposer."),
])
class SuccessiveHalving(pg.geno.DNAGenerator, AlgorithmHooks):
    """Promotion-type asynchronous successive halving over any memnas algorithm.

    When a worker is free (``propose``), the highest rung with a candidate in the top
    ``1/eta`` of its results (by reward; by non-dominated rank then crowding with
    ``multi_objective_promotion``) not promoted yet promotes it to the next rung, as
    ASHA does; when none can, the proposer gives a new candidate at the bracket's
    lowest rung. With ``brackets > 1`` (Hyperband), each new candidate joins a bracket
    drawn with Hyperband's proportions, bracket ``s`` starting at rung ``s``; rungs
    promote within their bracket. The proposer is told each candidate's first result
    (its lowest rung), once per candidate, as a plain algorithm expects.

    A promotion is a new trial of the same candidate with ``ctx.resume`` set to the
    checkpoint of the trial it continues; the proposer never sees it. Rungs are
    rebuilt on resume by replaying the calls, as any memnas algorithm is.
    """

    def _on_bound(self) -> None:
        super()._on_bound()
        self._budgets = rung_budgets(self.min_budget, self.max_budget, self.eta)
        top = len(self._budgets) - 1
        if isinstance(self.brackets, bool) or not isinstance(self.brackets, int) \
                or not 1 <= self.brackets <= top + 1:
            raise ConfigError(f"brackets must be an integer from 1 to {top + 1} (the rungs "
                              f"{self._budgets}), got {self.brackets!r}")
        inner = self.proposer
        if isinstance(inner, SuccessiveHalving):
            raise ConfigError("the proposer of a multi-fidelity algorithm cannot be one itself")
        self._inner = make_algorithm(inner, seed=self.seed, **dict(self.proposer_options or {}))
        # Hyperband's bracket sizes: bracket s starts at rung s with about
        # eta**(top-s) / (top-s+1) of the candidates.
        w = np.array([self.eta ** (top - s) / (top - s + 1) for s in range(self.brackets)])
        self._bracket_p = (w / w.sum()).tolist()

    @property
    def multi_objective(self) -> bool:
        return self.multi_objective_promotion

    @property
    def budget_unit(self) -> str:
        return self.budget_key

    def _setup(self) -> None:
        self._inner.setup(self.dna_spec)
        self._rng = random.Random(self.seed)
        self._entries: list[_Entry] = []
        self._by_obj: dict[int, tuple[pg.DNA, _Entry]] = {}  # id(dna) -> its proposal
        self._first: dict[int, pg.DNA] = {}      # candidate key -> its proposer DNA
        self._top = len(self._budgets) - 1

    # -- proposals ------------------------------------------------------------------
    def _propose(self) -> pg.DNA:
        promo = self._promotion()
        if promo is not None:
            parent_dna, parent = promo
            parent.promoted = True
            dna = parent_dna.clone(deep=True).use_spec(self.dna_spec)
            entry = _Entry(len(self._entries), parent.key, parent.bracket, parent.rung + 1,
                           parent_dna)
        else:
            dna = self._inner.propose()
            bracket = 0 if self.brackets == 1 else \
                self._rng.choices(range(self.brackets), weights=self._bracket_p)[0]
            entry = _Entry(len(self._entries), len(self._entries), bracket, bracket, None)
            self._first[entry.key] = dna
        entry.dna = dna
        self._entries.append(entry)
        self._by_obj[id(dna)] = (dna, entry)
        return dna

    def _promotion(self) -> tuple[pg.DNA, _Entry] | None:
        """The best promotable entry of the highest rung that has one, or None."""
        for rung in range(self._top - 1, -1, -1):
            for bracket in range(min(self.brackets, rung + 1)):
                done = [e for e in self._entries
                        if e.rung == rung and e.bracket == bracket and e.reward is not None]
                k = len(done) // self.eta
                if k == 0:
                    continue
                for e in self._ranked(done)[:k]:
                    if not e.promoted:
                        return self._dna_of(e), e
        return None

    def _ranked(self, entries: Sequence[_Entry]) -> list[_Entry]:
        """Entries best first: by reward, or by non-dominated rank then crowding;
        ties by proposal order."""
        if not self.multi_objective_promotion:
            return sorted(entries, key=lambda e: (-_scalar(e.reward), e.index))
        values = np.array([list(_vector(e.reward)) for e in entries], dtype=float)
        rank = _nondominated_rank(values)
        crowd = np.zeros(len(entries))
        for r in set(rank.tolist()):
            idx = np.nonzero(rank == r)[0]
            crowd[idx] = _crowding(values[idx])
        order = sorted(range(len(entries)), key=lambda i: (rank[i], -crowd[i], entries[i].index))
        return [entries[i] for i in order]

    @staticmethod
    def _dna_of(entry: _Entry) -> pg.DNA:
        assert entry.dna is not None
        return entry.dna

    # -- feedback -------------------------------------------------------------------
    def _feedback(self, dna: pg.DNA, reward: Any) -> None:
        found = self._by_obj.get(id(dna))
        if found is None:  # a DNA this search never proposed: the proposer's to learn from
            self._inner.feedback(dna, self._inner_reward(reward))
            return
        _, entry = found
        entry.reward = reward
        if entry.parent is None:
            self._inner.feedback(self._first[entry.key], self._inner_reward(reward))

    def _inner_reward(self, reward: Any) -> Any:
        if self._inner.multi_objective:
            return tuple(_vector(reward))
        return _scalar(reward)

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        """PyGlove's recovery (an unseeded proposer): a candidate seen before at rung k is
        its promotion to rung k+1."""
        key = _dna_key(dna)
        seen = [e for e in self._entries if _dna_key(self._dna_of(e)) == key]
        if seen:
            parent = max(seen, key=lambda e: e.rung)
            parent.promoted = True
            entry = _Entry(len(self._entries), parent.key, parent.bracket, parent.rung + 1,
                           self._dna_of(parent))
        else:
            self._inner.recover([(dna, None if reward is None else self._inner_reward(reward))])
            entry = _Entry(len(self._entries), len(self._entries), 0, 0, None)
            self._first[entry.key] = dna
        entry.reward, entry.dna = reward, dna
        self._entries.append(entry)
        self._by_obj[id(dna)] = (dna, entry)

    def warm_start(self, history: Sequence[tuple[pg.DNA, Any]]) -> None:
        """Earlier experiments' results go to the proposer only (they are not rungs)."""
        self._inner.recover([(d, None if r is None else self._inner_reward(r))
                             for d, r in history])

    # -- hooks ----------------------------------------------------------------------
    def rung_of(self, dna: pg.DNA) -> Rung | None:
        found = self._by_obj.get(id(dna))
        if found is None:
            return None
        _, e = found
        b = self._budgets[e.rung]
        below = self._budgets[e.rung - 1] if e.parent is not None else 0.0
        return Rung(budget={self.budget_key: _number(b),
                            f"max_{self.budget_key}": _number(self._budgets[-1])},
                    continues=e.parent, checkpoint=e.rung < self._top, cost=b - below)

    def bind(self, objectives: Mapping[str, str], costs: Any) -> None:
        if isinstance(self._inner, AlgorithmHooks):
            self._inner.bind(objectives, costs)


def _number(b: float) -> int | float:
    return int(b) if float(b).is_integer() else b


def _scalar(reward: Any) -> float:
    return float(reward[0]) if isinstance(reward, (tuple, list)) else float(reward)


def _vector(reward: Any) -> tuple[float, ...]:
    return tuple(float(r) for r in reward) if isinstance(reward, (tuple, list)) \
        else (float(reward),)


def _dna_key(dna: pg.DNA) -> str:
    return repr(dna.to_numbers())


def _nondominated_rank(values: np.ndarray) -> np.ndarray:
    """Front index of each row (0: non-dominated), all columns maximised."""
    rank = np.full(len(values), -1)
    left = np.arange(len(values))
    r = 0
    while left.size:
        mask = pareto_mask(values[left], ["max"] * values.shape[1])
        if not mask.any():  # NaNs: last
            rank[left] = r
            break
        rank[left[mask]] = r
        left = left[~mask]
        r += 1
    return rank


def _crowding(values: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of the rows of one front."""
    n, m = values.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(values[:, j], kind="stable")
        span = values[order[-1], j] - values[order[0], j]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (values[order[2:], j] - values[order[:-2], j]) / span
    return d


def _make(proposer: Any, seed: int | None, min_budget: float, max_budget: float, eta: int,
          budget_key: str, brackets: int, multi_objective: bool,
          proposer_options: Mapping[str, Any] | None) -> SuccessiveHalving:
    return SuccessiveHalving(proposer=proposer, min_budget=min_budget, max_budget=max_budget,
                             eta=eta, budget_key=budget_key, brackets=brackets,
                             multi_objective_promotion=multi_objective, seed=seed,
                             proposer_options=dict(proposer_options or {}) or None)


@register_algorithm("asha")
def asha(seed: int | None = None, proposer: Any = "random", min_budget: float = 1,
         max_budget: float = 9, eta: int = 3, budget_key: str = "steps",
         proposer_options: Mapping[str, Any] | None = None) -> SuccessiveHalving:
    """ASHA (promotion type) with ``proposer`` giving new candidates: "random" is ASHA,
    "tpe" a BOHB-like search, "evolution" a successive-halving evolution.

    Args:
      seed: seed of the proposer.
      proposer: a registered algorithm name or a ``pg.geno.DNAGenerator``.
      min_budget: budget of the lowest rung (in ``budget_key`` units, e.g. steps).
      max_budget: budget of the top rung.
      eta: the top ``1/eta`` of a rung is promoted; budgets grow ``eta``-fold.
      budget_key: the ``ctx.budget`` key set per trial (``max_<key>`` holds the top's).
      proposer_options: options of a named proposer.
    """
    return _make(proposer, seed, min_budget, max_budget, eta, budget_key, 1, False,
                 proposer_options)


@register_algorithm("hyperband")
def hyperband(seed: int | None = None, proposer: Any = "random", min_budget: float = 1,
              max_budget: float = 9, eta: int = 3, budget_key: str = "steps",
              brackets: int | None = None,
              proposer_options: Mapping[str, Any] | None = None) -> SuccessiveHalving:
    """Promotion-type Hyperband: `asha` with brackets starting at successive rungs.

    Args:
      brackets: number of brackets; None: one per rung below the top.
      (others as `asha`)
    """
    n = len(rung_budgets(min_budget, max_budget, eta)) - 1 if brackets is None else brackets
    return _make(proposer, seed, min_budget, max_budget, eta, budget_key, n, False,
                 proposer_options)


@register_algorithm("mo_asha")
def mo_asha(seed: int | None = None, proposer: Any = "random", min_budget: float = 1,
            max_budget: float = 9, eta: int = 3, budget_key: str = "steps",
            proposer_options: Mapping[str, Any] | None = None) -> SuccessiveHalving:
    """Multi-objective ASHA (Schmucker et al. 2021): rungs ranked by non-dominated
    sorting, ties by crowding distance; takes a tuple reward. Options as `asha`."""
    return _make(proposer, seed, min_budget, max_budget, eta, budget_key, 1, True,
                 proposer_options)
