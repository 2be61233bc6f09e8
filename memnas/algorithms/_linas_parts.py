"""LINAS's parts: predictors chosen by cross-validation, a DNA spec compiled for fast walks
and features, and NSGA-II's ranking (`memnas.algorithms.linas`)."""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import pyglove as pg

from memnas.algorithms._decisions import allowed_choices, from_unit, to_unit
from memnas.algorithms.random_search import _build, _norm
from memnas.errors import ConfigError
from memnas.pareto import pareto_mask

PREDICTORS = ("ridge", "svr", "random_forest", "gradient_boosting")
"""The regressors an objective's predictor is chosen from, by cross-validated error."""

Cand = tuple[tuple, dict[str, Any], Any]
"""A candidate: its key (the DNA's numbers), decisions ``{decision id: value}``, and the
node `Layout.dna` builds its DNA from (None for a measured DNA given from outside)."""


def _regressor(name: str, seed: int) -> Any:
    """A fresh scikit-learn regressor ``name`` of `PREDICTORS`."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.svm import SVR

    return {"ridge": lambda: Ridge(alpha=1.0),
            "svr": lambda: SVR(C=1.0, epsilon=0.05),
            "random_forest": lambda: RandomForestRegressor(n_estimators=30, random_state=seed,
                                                           n_jobs=1),
            "gradient_boosting": lambda: GradientBoostingRegressor(
                n_estimators=50, max_depth=3, random_state=seed)}[name]()


class Predictor:
    """A regressor chosen among `PREDICTORS` by k-fold error, fitted on standardised targets."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        z = (y - self.mean) / self.std
        self.name, self.model = "constant", None
        if len(y) < 3:
            return
        from sklearn.model_selection import KFold

        folds = list(KFold(n_splits=min(3, len(y)), shuffle=True, random_state=seed).split(x))
        best = math.inf
        for name in PREDICTORS:
            err = 0.0
            for train, test in folds:
                model = _regressor(name, seed).fit(x[train], z[train])
                err += float(np.sum((model.predict(x[test]) - z[test]) ** 2))
            if err < best:
                best, self.name = err, name
        self.model = _regressor(self.name, seed).fit(x, z)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted values of the rows of ``x``, in the targets' units."""
        if self.model is None:
            return np.full(len(x), self.mean)
        if self.name == "random_forest":  # the forest's own mean of its trees, without
            x32 = np.asarray(x, dtype=np.float32)  # joblib's dispatch (5x faster)
            z = np.mean([t.predict(x32, check_input=False) for t in self.model.estimators_],
                        axis=0)
        else:
            z = self.model.predict(x)
        return z * self.std + self.mean


class _Float(NamedTuple):
    """A float decision, as `from_unit`/`to_unit` read it."""

    id: str
    min_value: float
    max_value: float
    scale: str | None


class _Choices(NamedTuple):
    """A choice decision (one sub-choice of a `manyof`), as `allowed_choices` reads it."""

    id: str
    candidates: range
    num_choices: int
    distinct: bool
    sorted: bool


class Layout:
    """A DNA spec's decisions: walks that make them, and the feature vector of a DNA.

    The spec is compiled once into plain tuples: reading a `pg.DNASpec`'s symbolic
    attributes costs microseconds each, which NSGA-II's thousands of walks would
    spend many times over.
    """

    def __init__(self, spec: pg.DNASpec) -> None:
        self.spec = spec
        self.offsets: dict[str, tuple[int, _Float | None]] = {}  # the float's range, if one
        width = 0
        for dp in spec.decision_points:
            if isinstance(dp, pg.geno.Choices):
                self.offsets[str(dp.id)] = (width, None)
                width += len(dp.candidates)
            else:
                self.offsets[str(dp.id)] = (width, _Float(str(dp.id), dp.min_value,
                                                          dp.max_value, dp.scale))
                width += 2
        # Choices with the same candidates (one layer template repeated) also share a
        # count of each candidate over them, so that what is learnt of a candidate at
        # one place carries over to the others.
        groups: dict[tuple, list[str]] = {}
        for dp in spec.decision_points:
            if isinstance(dp, pg.geno.Choices) and len(dp.candidates) > 1:
                groups.setdefault(tuple(dp.literal_values), []).append(str(dp.id))
        self.shared: dict[str, int] = {}
        for literals, ids in groups.items():
            if len(ids) > 1:
                self.shared.update((i, width) for i in ids)
                width += len(literals)
        self.width = width
        self.root = self._compile(spec)

    def _compile(self, spec: Any) -> tuple:
        if spec.is_space:
            return ("space", [self._compile(e) for e in spec.elements])
        if isinstance(spec, pg.geno.Choices):
            subs = [spec] if spec.num_choices == 1 else list(spec.choice_specs)
            n = len(spec.candidates)
            info = _Choices("", range(n), spec.num_choices, spec.distinct, spec.sorted)
            return ("choices", info, list(range(n)),
                    [(info._replace(id=str(sub.id)), [self._compile(c) for c in sub.candidates])
                     for sub in subs])
        return ("float", _Float(str(spec.id), spec.min_value, spec.max_value, spec.scale))

    def walk(self, decide: Callable[[Any, list | None], Any]) -> Cand:
        """Makes the decisions in DNA order; ``decide(decision, allowed)`` returns a
        candidate index among ``allowed`` (None for a float: the float's value)."""
        decisions: dict[str, Any] = {}
        node = self._walk(self.root, decide, decisions)
        return tuple(decisions.values()), decisions, node

    def _walk(self, spec: tuple, decide: Callable, out: dict[str, Any]) -> Any:
        if spec[0] == "space":
            return _norm(None, [self._walk(e, decide, out) for e in spec[1]])
        if spec[0] == "choices":
            _, info, every, subs = spec
            picks: list[int] = []
            kids = []
            for sub, candidates in subs:
                allowed = every if info.num_choices == 1 else allowed_choices(info, picks)
                c = int(decide(sub, allowed))
                picks.append(c)
                out[sub.id] = c
                kids.append(_norm(c, [self._walk(candidates[c], decide, out)]))
            return _norm(None, kids)
        value = float(decide(spec[1], None))
        out[spec[1].id] = value
        return value, []

    def dna(self, node: Any) -> pg.DNA:
        """The DNA of a walk's node, built as `pg.DNA.from_numbers` would (but ~50x faster)."""
        with pg.enable_type_check(False):
            dna = _build(node)
        return dna.use_spec(self.spec)

    def of(self, dna: pg.DNA) -> Cand:
        """The candidate of a given DNA (its numbers replayed through a walk).

        Raises:
          ConfigError: the DNA does not fit the spec.
        """
        numbers = dna.to_numbers()
        it = iter(numbers)
        try:
            cand = self.walk(lambda dp, allowed: next(it))
        except (StopIteration, IndexError, TypeError, ValueError):
            cand = None
        if cand is None or len(cand[0]) != len(numbers):
            raise ConfigError(f"DNA {dna} does not fit the search space "
                              f"({len(self.offsets)} decisions)")
        return cand

    def features(self, decisions: Mapping[str, Any]) -> np.ndarray:
        """One-hot per choice, (unit value, 1) per float, zeros for decisions not made;
        then the shared counts."""
        row = np.zeros(self.width)
        for k, v in decisions.items():
            offset, info = self.offsets[k]
            if info is None:
                row[offset + v] = 1.0
                if k in self.shared:
                    row[self.shared[k] + v] += 1.0
            else:
                row[offset], row[offset + 1] = to_unit(info, v), 1.0
        return row


def random_decide(rng: random.Random) -> Callable[[Any, list | None], Any]:
    """A `Layout.walk` decider drawing every decision uniformly from ``rng``."""
    return lambda dp, allowed: (rng.choice(allowed) if allowed is not None
                                else from_unit(dp, rng.random()))


def nsga2_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NSGA-II's non-domination rank (0: the front) and crowding distance of each row;
    every column is maximised."""
    n, k = values.shape
    rank, crowd = np.zeros(n, dtype=int), np.zeros(n)
    left, r = np.arange(n), 0
    while left.size:
        mask = pareto_mask(values[left], ["max"] * k)
        if not mask.any():  # rows with NaN only: the last front
            mask[:] = True
        front = left[mask]
        rank[front] = r
        for j in range(k):
            v = values[front, j]
            order = np.argsort(v, kind="stable")
            span = v[order[-1]] - v[order[0]]
            crowd[front[order[[0, -1]]]] = math.inf
            if front.size > 2 and span > 0:
                crowd[front[order[1:-1]]] += (v[order[2:]] - v[order[:-2]]) / span
        left, r = left[~mask], r + 1
    return rank, crowd
