"""Result: an experiment's trials read back from the store as pandas DataFrames."""

from __future__ import annotations

from typing import Any

from memnas.errors import ConfigError
from memnas.pareto import pareto_mask
from memnas.store import DEFAULT_URL, Store


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
        self.experiment = self._store.require_experiment(name)

    @property
    def objectives(self) -> dict[str, str]:
        """``{"metric": "max" | "min"}`` as the experiment was defined."""
        return dict(self.experiment["objectives"])

    def trials(self) -> "Any":
        """A pandas DataFrame with one row per trial.

        Columns: number, status, summary, decisions (dict), one column per metric and
        cost, wall_time, seed, attempt, node, sym_hash, cached_from, error, timestamps.
        """
        import pandas as pd

        rows = []
        for t in self._store.trials(self.experiment["id"]):
            row = {k: t[k] for k in ("number", "status", "summary", "decisions")}
            row.update(t["costs"] or {})
            row.update(t["metrics"] or {})
            row.update({k: t[k] for k in ("wall_time", "seed", "attempt", "node", "sym_hash",
                                          "fn_hash", "cached_from", "cache_kind", "saved_time",
                                          "error", "created_at",
                                          "started_at", "finished_at", "id")})
            rows.append(row)
        df = pd.DataFrame(rows)
        if df.empty:
            df = pd.DataFrame(columns=["number", "status", "summary", "decisions"])
        return df

    def pareto_front(self, objectives: dict[str, str] | None = None) -> "Any":
        """The non-dominated completed trials for ``objectives`` (default: the experiment's)."""
        objectives = objectives or self.objectives
        df = self.trials()
        names = list(objectives)
        if df.empty or any(n not in df.columns for n in names):
            return df.iloc[0:0]
        done = df[df["status"].isin(["completed", "cached"])]
        mask = pareto_mask(done[names].to_numpy(dtype=float), [objectives[n] for n in names])
        return done[mask].sort_values(names[0], ascending=objectives[names[0]] == "min")

    def best(self, objective: str | None = None) -> dict[str, Any] | None:
        """The completed trial best on ``objective`` (default: the first objective)."""
        objective = objective or next(iter(self.objectives))
        direction = self.objectives.get(objective, "max")
        df = self.trials()
        if df.empty or objective not in df.columns:
            return None
        done = df[df["status"].isin(["completed", "cached"])].dropna(subset=[objective])
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

    def counts(self) -> dict[str, int]:
        """Number of trials per status."""
        df = self.trials()
        return {} if df.empty else {k: int(v) for k, v in df["status"].value_counts().items()}

    def __repr__(self) -> str:
        return f"Result(name={self.name!r}, trials={sum(self.counts().values())})"


def load(name: str, store: str = DEFAULT_URL) -> Result:
    """The `Result` of a stored experiment (``memnas.load("quickstart")``)."""
    return Result(name, store)

