"""Result: an experiment's trials read back from the store as pandas DataFrames."""

from __future__ import annotations

from typing import Any

from memnas.errors import ConfigError
from memnas.pareto import pareto_mask
from memnas.store import DEFAULT_URL, Store, cachekinds, reader, rungs
from memnas.store.liveness import shown_status


class Result:
    """The stored state of an experiment; every call reads the store afresh.

    Args:
      name: the experiment's name.
      store: the store's URL.

    Raises:
      StoreError: no experiment of that name in the store.
    """

    def __init__(self, name: str, store: str = DEFAULT_URL) -> None:
        self.name = name
        self._store = Store(store, read_only=True)
        exp = self._store.require_experiment(name)
        self.experiment = {**exp, "status": shown_status(exp)}  # a dead driver's: interrupted

    @property
    def objectives(self) -> dict[str, str]:
        """``{"metric": "max" | "min"}`` as the experiment was defined."""
        return dict(self.experiment["objectives"])

    def trials(self) -> "Any":
        """A pandas DataFrame with one row per trial (`memnas.store.reader.trials_frame`).

        Columns: number, status, summary, decisions (the stored dict), one column per
        metric and cost (objectives first), one column per decision (named by its path,
        e.g. ``layers[0].mixer``, holding the chosen value's short label, e.g.
        ``MirasMemory``; None where the trial did not make it; ``decision:NAME`` if a
        metric has the name), then budget (a multi-fidelity trial's, e.g. its steps),
        parent (the number of the trial whose checkpoint it continued), wall_time, attempt, cached_from, node, timestamps,
        error, seed, sym_hash, fn_hash, cache_kind, saved_time, created_at and id.
        ``df.groupby("layers[0].mixer")`` groups trials by a decision.
        """
        return reader.trials_frame(self._store, self.experiment["id"], self.objectives,
                                   detail=True)

    def pareto_front(self, objectives: dict[str, str] | None = None) -> "Any":
        """The non-dominated candidates with a result for ``objectives`` (default: the
        experiment's), each architecture once; a supernet run is no candidate
        (`memnas.store.roles`), and neither is a trial that broke the experiment's
        constraints (infeasible, or cost ``constraint_violation`` > 0: `memnas.store.rungs`).

        A cached twin of a trial also in the front (or trials sharing a ``sym_hash`` with
        equal values) is folded into the evaluated trial: its number is listed in that
        row's ``twins`` column (`memnas.store.reader.fold_twins`).
        """
        objectives = objectives or self.objectives
        df = self.trials()
        names = list(objectives)
        if df.empty or any(n not in df.columns for n in names):
            return df.iloc[0:0].assign(twins=[])
        done = reader.fold_twins(rungs.ranked(df), names)
        mask = pareto_mask(done[names].to_numpy(dtype=float), [objectives[n] for n in names])
        return done[mask].sort_values(names[0], ascending=objectives[names[0]] == "min")

    def best(self, objective: str | None = None) -> dict[str, Any] | None:
        """The candidate with a result best on ``objective`` (default: the first
        objective); never a supernet run (`memnas.store.roles`) nor a trial that broke
        the experiment's constraints (`memnas.store.rungs.ranked`)."""
        objective = objective or next(iter(self.objectives))
        direction = self.objectives.get(objective, "max")
        df = self.trials()
        if df.empty or objective not in df.columns:
            return None
        done = rungs.ranked(df).dropna(subset=[objective])
        if done.empty:
            return None
        idx = done[objective].idxmax() if direction == "max" else done[objective].idxmin()
        return done.loc[idx].to_dict()

    def curve(self, number: int) -> "Any":
        """The training curve of trial ``number`` as a DataFrame (step, name, value)."""
        import pandas as pd

        t = self._store.trial(self.experiment["id"], number)
        return pd.DataFrame(self._store.curve(t["id"]) if t else [],
                            columns=["step", "name", "value"])

    def artifact(self, number: int, kind: str = "output") -> dict[str, Any] | None:
        """Trial ``number``'s ``output`` (from its evaluator) or ``input`` (from its
        algorithm) artifact, arrays as numpy; None when it has none.

        Raises:
          ConfigError: no trial ``number`` in this experiment.
        """
        t = self._store.trial(self.experiment["id"], number)
        if t is None:
            raise ConfigError(f"experiment {self.name!r} has no trial {number!r}")
        return self._store.load_artifact(t["id"], kind)

    def cache_counters(self) -> dict[str, float]:
        """Equivalence-cache counters: misses (evaluated), hits, attached, seconds saved."""
        return self._store.cache_counters(self.experiment["id"])

    def cache_kind_counts(self) -> dict[str, dict[str, int]]:
        """Cached trials by how (``hit``, ``attached``) and kind (``duplicate``, ``canonical``,
        ``functional``; ``unknown`` in a store written before kinds were recorded), see
        `memnas.store.cachekinds.cache_kind_counts`."""
        return cachekinds.cache_kind_counts(self._store, self.experiment["id"])

    def counts(self) -> dict[str, int]:
        """Number of trials per status (``infeasible`` ones included)."""
        return reader.status_counts(self._store, self.experiment["id"])

    def rungs(self) -> dict[str, Any] | None:
        """A multi-fidelity experiment's rungs: ``unit`` (the budget's name, e.g.
        ``"steps"``, or None), ``trials`` (``{budget: number of trials}``, budgets
        ascending) and ``spent`` (the sum of the trials' cost ``budget_spent``); None
        when no trial has a budget."""
        df = reader.trials_frame(self._store, self.experiment["id"], self.objectives)
        budgets = df["budget"].dropna()
        if not len(budgets):
            return None
        counts = budgets.value_counts()
        spent = df[rungs.BUDGET_SPENT].sum() if rungs.BUDGET_SPENT in df else 0.0
        return {"unit": df.attrs.get("budget_unit"),
                "trials": {k: int(counts[k]) for k in sorted(counts.index, key=_order)},
                "spent": float(spent)}

    def __repr__(self) -> str:
        return f"Result(name={self.name!r}, trials={sum(self.counts().values())})"


def _order(value: Any) -> tuple:
    """Sort key of budgets: numbers ascending, then texts."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def load(name: str, store: str = DEFAULT_URL) -> Result:
    """The `Result` of a stored experiment (``memnas.load("quickstart")``)."""
    return Result(name, store)

