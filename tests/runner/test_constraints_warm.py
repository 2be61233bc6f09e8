"""Constraints (infeasible candidates never trained; constrained domination) and warm starts."""

from __future__ import annotations

import os

import pyglove as pg
import pytest

import fidelitytoys
import memnas
import toyspace
from memnas.constraints import INFEASIBLE_REWARD, penalty, violation
from memnas.errors import ConfigError
from memnas.store import Store


_trials = fidelitytoys.trials


def _constrained(url, name="c", algorithm="evolution", **kw):
    return memnas.Experiment(name=name, space=toyspace.point_space(),
                             evaluator=fidelitytoys.CostedToy(), algorithm=algorithm,
                             algorithm_options={"population_size": 4, "tournament_size": 2}
                             if algorithm == "evolution" else {}, seed=5, store=url,
                             objectives={"accuracy": "max"},
                             constraints={"params": ("<=", 20)}, **kw)


def test_infeasible_candidates_are_stored_with_their_costs_and_never_trained(store_url):
    fidelitytoys.EVALUATED.clear()
    _constrained(store_url).run(max_trials=20, executor="local")
    trials = _trials(store_url, "c")
    bad = [t for t in trials if t["status"] == "infeasible"]
    assert bad and len(trials) == 20
    for t in bad:
        assert t["costs"]["params"] > 20 and not t["metrics"]
        assert t["error"].startswith("infeasible: breaks the constraints by")
    assert fidelitytoys.EVALUATED and all(y <= 2 for _, y, _ in fidelitytoys.EVALUATED)
    # Fed back as such: evolution learns to stay feasible (fewer infeasible later on).
    late = [t["status"] == "infeasible" for t in trials[10:]]
    early = [t["status"] == "infeasible" for t in trials[:10]]
    assert sum(late) <= sum(early)


def test_a_constrained_search_stopped_and_resumed_proposes_the_same(tmp_path):
    whole, part = f"sqlite:///{tmp_path}/w.db", f"sqlite:///{tmp_path}/p.db"
    _constrained(whole).run(max_trials=16, executor="local")
    _constrained(part).run(max_trials=6, executor="local")
    _constrained(part).run(max_trials=16, executor="local")
    assert [(t["candidate"], t["status"]) for t in _trials(part, "c")] == \
        [(t["candidate"], t["status"]) for t in _trials(whole, "c")]


def test_a_constraint_on_a_metric_known_after_training_marks_the_trial(sqlite_url):
    exp = memnas.Experiment(name="post", space=toyspace.point_space(),
                            evaluator=toyspace.evaluate, algorithm="random", seed=1,
                            store=sqlite_url, objectives={"accuracy": "max", "params": "min"},
                            constraints={"accuracy": (">=", 0.95)})
    exp.run(max_trials=20, executor="local")
    trials = _trials(sqlite_url, "post")
    broken = [t for t in trials if t["costs"].get("constraint_violation")]
    assert broken and all(t["status"] == "completed" for t in broken)
    assert all(t["metrics"]["accuracy"] < 0.95 for t in broken)
    assert all(t["metrics"]["accuracy"] >= 0.95 for t in trials if t not in broken)


def test_constrained_domination_by_penalty():
    assert violation({"a": 5.0}, {"a": ("<=", 4.0)}) == pytest.approx(0.25)
    assert violation({"a": 3.0}, {"a": ("<=", 4.0), "b": (">=", 1.0)}) == 0.0  # b unknown
    worse, better = penalty(2.0, 2, True), penalty(1.0, 2, True)
    assert all(w < b < -1e11 for w, b in zip(worse, better))  # less violation dominates
    assert penalty(0.5, 1, False) == INFEASIBLE_REWARD - 0.5


@pytest.mark.parametrize("constraints, match", [
    ({"latency": ("<=", 3)}, "constraint on unknown metric 'latency': expected an objective "
                             "\\(accuracy\\) or a cost the evaluator computes before training "
                             "\\(params\\)"),
    ({"params": ("<", 3)}, "constraint on 'params' must be \\('<=' or '>=', bound\\)"),
    ({"params": ("<=", float("nan"))}, "constraint on 'params' needs a finite number"),
])
def test_bad_constraints_are_refused_in_one_line(sqlite_url, constraints, match):
    with pytest.raises(ConfigError, match=match) as e:
        memnas.Experiment(name="x", space=toyspace.point_space(),
                          evaluator=fidelitytoys.CostedToy(), store=sqlite_url,
                          constraints=constraints)
    assert "\n" not in str(e.value)
    assert not os.path.exists(sqlite_url[len("sqlite:///"):])


def test_a_constraint_on_a_cost_needs_the_evaluators_costs_hook(sqlite_url):
    with pytest.raises(ConfigError, match="it has no costs\\(candidate\\) hook"):
        memnas.Experiment(name="x", space=toyspace.point_space(), evaluator=toyspace.evaluate,
                          store=sqlite_url, constraints={"flops": ("<=", 3)})


# ---- warm start --------------------------------------------------------------------


def _evo(url, name, warm=None, seed=11):
    return memnas.Experiment(name=name, space=toyspace.point_space(),
                             evaluator=toyspace.evaluate, algorithm="evolution",
                             algorithm_options={"population_size": 8, "tournament_size": 3},
                             seed=seed, store=url, warm_start=warm)


def _decisions(t):
    return pg.from_json_str(t["candidate"]) if False else t["decisions"]


def test_a_warm_started_evolution_starts_from_the_earlier_results(store_url):
    memnas.Experiment(name="earlier", space=toyspace.point_space(),
                      evaluator=toyspace.evaluate, algorithm="random", seed=2,
                      store=store_url).run(max_trials=30, executor="local")
    earlier = _trials(store_url, "earlier")
    _evo(store_url, "warm", warm=["earlier"]).run(max_trials=6, executor="local")
    warm = _trials(store_url, "warm")
    assert len(warm) == 6 and len(_trials(store_url, "earlier")) == 30  # its own trials
    s = Store(store_url, read_only=True)
    config = s.experiment("warm")["config"]
    s.close()
    assert sorted(config["warm_start_trials"]) == sorted(t["id"] for t in earlier)
    # Population full from the start: every proposal is a one-decision mutation of an
    # earlier trial, none of the 8 random draws a cold evolution starts with.
    olds = [t["decisions"] for t in earlier]
    for t in warm:
        diffs = min(sum(t["decisions"][k] != o[k] for k in o) for o in olds)
        assert diffs <= 1, t["decisions"]


def test_a_warm_started_search_resumes_exactly(tmp_path):
    def run(url, n):
        memnas.Experiment(name="earlier", space=toyspace.point_space(),
                          evaluator=toyspace.evaluate, algorithm="random", seed=2,
                          store=url).run(max_trials=20, executor="local")
        _evo(url, "warm", warm=["earlier"]).run(max_trials=n, executor="local")

    whole, part = f"sqlite:///{tmp_path}/w.db", f"sqlite:///{tmp_path}/p.db"
    run(whole, 12)
    run(part, 5)
    # The earlier experiment is continued meanwhile: the resume still feeds the 20 it had.
    memnas.Experiment(name="earlier", space=toyspace.point_space(),
                      evaluator=toyspace.evaluate, algorithm="random", seed=2,
                      store=part).run(max_trials=40, executor="local")
    _evo(part, "warm", warm=["earlier"]).run(max_trials=12, executor="local")
    assert [t["candidate"] for t in _trials(part, "warm")] == \
        [t["candidate"] for t in _trials(whole, "warm")]


def test_warm_start_refuses_an_unknown_experiment_or_another_space(sqlite_url):
    with pytest.raises(ConfigError, match="warm_start experiment 'nope' is not in"):
        _evo(sqlite_url, "w", warm=["nope"]).run(max_trials=2, executor="local")
    s = Store(sqlite_url, read_only=True)
    assert s.experiment("w") is None
    s.close()
    memnas.Experiment(name="other", space=pg.Dict(x=pg.oneof([1, 2])),
                      evaluator=lambda p, ctx: {"accuracy": p["x"]}, algorithm="random",
                      store=sqlite_url).run(max_trials=2, executor="local")
    with pytest.raises(ConfigError, match="warm_start experiment 'other' searched a different "
                                          "space than 'w'"):
        _evo(sqlite_url, "w", warm=["other"]).run(max_trials=2, executor="local")
    with pytest.raises(ConfigError, match="cannot warm-start from itself"):
        _evo(sqlite_url, "w", warm=["w"])
