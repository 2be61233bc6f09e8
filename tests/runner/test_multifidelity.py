"""Multi-fidelity in memnas's own driver: rungs as trials at a budget, resumed checkpoints,
max_cost, the cache keyed on the budget, exact resume."""

from __future__ import annotations

import os

import pytest

import fidelitytoys
import memnas
from memnas.errors import ConfigError


_trials = fidelitytoys.trials


def test_asha_runs_rungs_that_resume_their_parents_checkpoint(store_url):
    fidelitytoys.CALLS.clear()
    fidelitytoys.experiment(store_url, "mf").run(max_trials=30, executor="local")
    trials = _trials(store_url, "mf")
    by_id = {t["id"]: t for t in trials}
    assert len(trials) == 30 and {t["status"] for t in trials} <= {"completed", "cached"}
    budgets = [t["budget"]["steps"] for t in trials]
    assert set(budgets) == {1, 3, 9}           # every rung reached
    promoted = [t for t in trials if t["parent_id"] is not None]
    assert promoted and all(t["budget"]["max_steps"] == 9 for t in trials)
    for t in promoted:                          # the same candidate, one rung below
        parent = by_id[t["parent_id"]]
        assert parent["candidate"] == t["candidate"]
        assert parent["budget"]["steps"] * 3 == t["budget"]["steps"]
        assert parent["number"] < t["number"]
    # Every promotion resumed its parent's checkpoint and trained only the difference.
    resumed = {trial: start for trial, _, start in fidelitytoys.CALLS if start is not None}
    for t in promoted:
        if t["status"] == "completed":
            assert resumed[t["number"]] == by_id[t["parent_id"]]["budget"]["steps"]
            assert t["costs"]["budget_spent"] == t["budget"]["steps"] - resumed[t["number"]]
    # Promotion-type ASHA: a rung-1 trial only for a candidate in the top third of rung 0.
    first = next(t for t in trials if t["budget"]["steps"] == 3)
    rung0 = [t for t in trials if t["budget"]["steps"] == 1 and t["number"] < first["number"]]
    parent = by_id[first["parent_id"]]
    better = sum(t["metrics"]["accuracy"] > parent["metrics"]["accuracy"] for t in rung0)
    assert better < len(rung0) / 3


def test_max_cost_stops_the_run_at_the_budget_spent(sqlite_url):
    fidelitytoys.experiment(sqlite_url, "cost").run(max_trials=1000, executor="local",
                                                    max_cost=60)
    trials = _trials(sqlite_url, "cost")
    spent = sum(t["costs"]["budget_spent"] for t in trials)
    assert 60 <= spent <= 60 + 9 and len(trials) < 1000
    # Continued with a larger budget, it goes on from there.
    fidelitytoys.experiment(sqlite_url, "cost").run(max_trials=1000, executor="local",
                                                    max_cost=120)
    assert 120 <= sum(t["costs"]["budget_spent"] for t in _trials(sqlite_url, "cost")) <= 129


def test_an_evaluator_that_cannot_resume_is_charged_its_whole_budget(sqlite_url):
    fidelitytoys.experiment(sqlite_url, "plain", evaluator=fidelitytoys.evaluate_plain).run(
        max_trials=20, executor="local")
    for t in _trials(sqlite_url, "plain"):
        assert t["costs"]["budget_spent"] == (0 if t["status"] == "cached"
                                              else t["budget"]["steps"])


def test_the_cache_answers_only_results_at_the_same_budget(sqlite_url):
    fidelitytoys.experiment(sqlite_url, "a").run(max_trials=25, executor="local")
    fidelitytoys.experiment(sqlite_url, "b").run(max_trials=25, executor="local")
    a, b = _trials(sqlite_url, "a"), _trials(sqlite_url, "b")
    by_id = {t["id"]: t for t in a + b}
    hits = [t for t in b if t["status"] == "cached"]
    assert len(hits) >= 20                      # the same seed: the same proposals
    for t in hits:
        source = by_id[t["cached_from"]]
        assert source["candidate"] == t["candidate"] and source["budget"] == t["budget"]
    # A promotion of a cached candidate resumes its source's checkpoint.
    assert all(t["parent_id"] is None or t["parent_id"] in by_id for t in b)


def test_stopped_and_resumed_asha_proposes_what_an_uninterrupted_one_does(tmp_path):
    whole, part = f"sqlite:///{tmp_path}/w.db", f"sqlite:///{tmp_path}/p.db"
    fidelitytoys.experiment(whole, "e").run(max_trials=24, executor="local")
    fidelitytoys.experiment(part, "e").run(max_trials=9, executor="local")
    fidelitytoys.experiment(part, "e").run(max_trials=24, executor="local")
    key = [(t["candidate"], t["budget"], t["parent_id"] is not None) for t in
           _trials(whole, "e")]
    assert [(t["candidate"], t["budget"], t["parent_id"] is not None) for t in
            _trials(part, "e")] == key


@pytest.mark.parametrize("options, match", [
    ({"min_budget": 9, "max_budget": 9}, "min_budget \\(9\\) must be below max_budget"),
    ({"min_budget": 0}, "min_budget must be a positive number, got 0"),
    ({"eta": 1}, "eta must be an integer >= 2, got 1"),
])
def test_bad_budget_bounds_are_refused_before_anything_is_written(sqlite_url, options, match):
    with pytest.raises(ConfigError, match=match):
        fidelitytoys.experiment(sqlite_url, "bad", algorithm_options=options).run(
            max_trials=3, executor="local")
    assert not os.path.exists(sqlite_url[len("sqlite:///"):])  # refused when made


def test_max_cost_needs_a_multi_fidelity_algorithm(sqlite_url):
    exp = memnas.Experiment(name="r", space=fidelitytoys.toyspace.point_space(),
                            evaluator=fidelitytoys.evaluate, algorithm="random",
                            store=sqlite_url)
    with pytest.raises(ConfigError, match="max_cost=10 needs a multi-fidelity algorithm"):
        exp.run(max_trials=3, executor="local", max_cost=10)


def test_mo_asha_promotes_by_non_dominated_rank(sqlite_url):
    fidelitytoys.experiment(sqlite_url, "mo", algorithm="mo_asha",
                            objectives={"accuracy": "max", "params": "min"}).run(
        max_trials=30, executor="local")
    trials = _trials(sqlite_url, "mo")
    assert {t["budget"]["steps"] for t in trials} == {1, 3, 9}


def test_hyperband_brackets_start_new_candidates_at_several_rungs(sqlite_url):
    fidelitytoys.experiment(sqlite_url, "hb", algorithm="hyperband").run(
        max_trials=40, executor="local")
    fresh = {t["budget"]["steps"] for t in _trials(sqlite_url, "hb") if t["parent_id"] is None}
    assert fresh == {1, 3}
