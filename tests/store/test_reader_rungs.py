"""The trial reader on multi-fidelity and constrained stores made by real runs: budgets,
parents, promotions, infeasible trials and constraint violations (never best, never on a
front), and older stores without the rung columns."""

from __future__ import annotations

import math
import os
import shutil

import pytest

import fidelitytoys
from fidelitytoys import CostedToy
import memnas
import toyspace
from memnas.store import Store, reader
from memnas.store.rungs import budget_column, budget_value, ranked

OBJ = {"accuracy": "max", "params": "min"}
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> str:
    """One store with an ASHA run ("mf") and a constrained random search ("cons"): params
    <= 25 known before training (infeasible trials), accuracy <= 1.05 known after it (the
    most accurate trial breaks it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('rungs')}/r.db"
    fidelitytoys.experiment(url, "mf").run(max_trials=40, executor="local")
    memnas.Experiment(name="cons", space=toyspace.point_space(), evaluator=CostedToy(),
                      algorithm="random", seed=1, store=url, objectives=OBJ,
                      constraints={"params": ("<=", 25), "accuracy": ("<=", 1.05)}
                      ).run(max_trials=20, executor="local")
    return url


def _frame(url: str, name: str, detail: bool = False):
    store = Store(url, read_only=True)
    try:
        exp = store.require_experiment(name)
        return store, exp, reader.trials_frame(store, exp["id"], exp["objectives"], detail)
    finally:
        store.close()


@pytest.mark.parametrize("detail", [False, True])
def test_budget_and_parent_columns_of_a_multi_fidelity_run(stores, detail):
    store, exp, df = _frame(stores, "mf", detail)
    assert df.attrs["budget_unit"] == "steps"
    assert set(df["budget"]) == {1.0, 3.0, 9.0} and df["budget"].dtype == float
    assert df["budget_spent"].notna().all()
    promoted = df[df["parent"].notna()]
    assert len(promoted) and promoted["budget"].gt(1.0).all()
    assert df.loc[df["budget"] == 1.0, "parent"].isna().all()
    by_number = df.set_index("number")
    for _, row in promoted.iterrows():  # the same candidate, from the rung below
        parent = by_number.loc[int(row["parent"])]
        assert parent["budget"] < row["budget"] and parent["summary"] == row["summary"]
        assert row["budget_spent"] == row["budget"] - parent["budget"]
    cols = list(df.columns)
    assert cols.index("budget") < cols.index("parent") < cols.index("wall_time")


def test_trial_row_names_the_promotions(stores):
    store, exp, df = _frame(stores, "mf")
    top = df[df["budget"] == 9.0].iloc[0]
    t = reader.trial_row(Store(stores, read_only=True), exp["id"], int(top["number"]))
    assert t["budget"] == {"steps": 9, "max_steps": 9}
    assert t["parent"] == {"number": int(top["parent"]), "budget": 3.0}
    assert t["continued_by"] == []
    below = reader.trial_row(Store(stores, read_only=True), exp["id"], int(top["parent"]))
    assert {"number": int(top["number"]), "budget": 9.0} in below["continued_by"]
    assert below["parent"]["budget"] == 1.0


def test_infeasible_trials_are_counted_and_keep_their_costs_and_reason(stores):
    store, exp, df = _frame(stores, "cons")
    counts = reader.status_counts(Store(stores, read_only=True), exp["id"])
    assert counts["infeasible"] == (df["status"] == "infeasible").sum() > 0
    bad = df[df["status"] == "infeasible"]
    assert bad["accuracy"].isna().all() and (bad["params"] > 25).all()
    assert bad["error"].str.startswith("infeasible: breaks the constraints").all()
    assert df["budget"].isna().all() and df["parent"].isna().all()
    assert memnas.load("cons", stores).counts() == counts


def test_trials_that_broke_constraints_are_never_best_nor_on_the_front(stores):
    store, exp, df = _frame(stores, "cons")
    broke = df[df["constraint_violation"].fillna(0) > 0]
    assert len(broke) and (broke["accuracy"] > 1.05).all()
    top = df.loc[df["accuracy"].idxmax()]  # the most accurate one broke accuracy <= 1.05
    assert top["constraint_violation"] > 0
    allowed = ranked(df)
    assert not set(allowed["number"]) & set(broke["number"])
    assert not (allowed["status"] == "infeasible").any()
    best = reader.best_values(Store(stores, read_only=True), exp["id"], OBJ)
    assert best["accuracy"] == allowed["accuracy"].max() < top["accuracy"]
    assert best["params"] == allowed["params"].min()
    result = memnas.load("cons", stores)
    assert result.best()["number"] == allowed.loc[allowed["accuracy"].idxmax(), "number"]
    assert not result.best("params")["constraint_violation"] > 0  # NaN: none broken
    front = result.pareto_front()
    assert len(front) and not set(front["number"]) & set(broke["number"])
    assert set(front["status"]) == {"completed"}


def test_result_rungs(stores):
    rungs = memnas.load("mf", stores).rungs()
    assert rungs["unit"] == "steps" and list(rungs["trials"]) == [1.0, 3.0, 9.0]
    df = _frame(stores, "mf")[2]
    assert sum(rungs["trials"].values()) == len(df) == 40
    assert rungs["spent"] == df["budget_spent"].sum()
    assert memnas.load("cons", stores).rungs() is None


def test_budget_values_read_as_one_value_or_text():
    assert budget_value({"steps": 3, "max_steps": 9}) == 3.0
    assert budget_value({"epochs": 2}) == 2.0
    assert budget_value({"steps": 3, "tasks": 2}) == '{"steps": 3, "tasks": 2}'
    assert budget_value(None) is None and budget_value({}) is None
    values, unit = budget_column([{"steps": 1, "max_steps": 9}, None])
    assert values[0] == 1.0 and math.isnan(values[1]) and unit == "steps"
    values, unit = budget_column([{"steps": 1, "max_steps": 9}, {"a": 1, "b": 2}, None])
    assert values == ['{"max_steps": 9, "steps": 1}', '{"a": 1, "b": 2}', None]
    assert unit is None


def test_a_store_older_than_the_rung_columns_reads_read_only(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copy(os.path.join(FIXTURES, "v1_store.sqlite"), path)
    store = Store(f"sqlite:///{path}", read_only=True)
    try:
        exp = store.experiments()[0]
        df = reader.trials_frame(store, exp["id"], exp["objectives"])
        assert len(df) and df["budget"].isna().all() and df["parent"].isna().all()
        t = reader.trial_row(store, exp["id"], int(df["number"].iloc[0]))
        assert t["budget"] is None and t["parent"] is None and t["continued_by"] == []
    finally:
        store.close()
