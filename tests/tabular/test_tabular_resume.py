"""`TabularEvaluator` in a multi-fidelity search: checkpoints, resumed rungs, known costs."""

from __future__ import annotations

import pyglove as pg
import pytest

import memnas
from memnas.measurement import Context, costs_before_training
from memnas.store import artifacts
from memnas.tabular import TabularEvaluator, load_table, tabular_space
from memnas.tabular.v2 import TABLE_V2_PATH, tabular_space_v2


def _candidate(space, key: str):
    """The candidate of a table key (its DNA's numbers), without sweeping the space."""
    dna = pg.DNA.from_numbers([int(n) for n in key.split(",")], pg.dna_spec(space))
    return pg.materialize(space, dna)


@pytest.fixture(scope="module")
def v2():
    """The shipped v2 table (budgets 50, 100, 200, 400), a candidate of it and its key."""
    table = load_table(TABLE_V2_PATH)
    key = sorted(table.rows)[123]
    return table, _candidate(tabular_space_v2(), key), key


@pytest.fixture(scope="module")
def v1():
    """A candidate of the shipped v1 table (no budgets)."""
    return _candidate(tabular_space(), sorted(load_table().rows)[5])


def test_a_resumed_rung_costs_only_the_steps_past_its_parent(v2):
    table, candidate, key = v2
    evaluator = TabularEvaluator(path=TABLE_V2_PATH, seed_mode="trial")
    low = evaluator(candidate, Context(seed=1, budget={"steps": 100, "max_steps": 400},
                                       checkpoint=True))
    assert low.artifact == {"steps": 100}
    assert low.costs["budget_spent"] == 100
    assert low.costs["simulated_time_spent"] == low.costs["simulated_time"]
    parent = artifacts.decode(artifacts.encode(low.artifact))       # as the store keeps it
    high = evaluator(candidate, Context(seed=1, budget={"steps": 400, "max_steps": 400},
                                        resume=parent))
    time = {b: table._value(key, "train_time_s", 1, b) for b in (100, 400)}
    assert high.costs["simulated_time"] == time[400]                # the full run's time at 400
    assert high.costs["budget_spent"] == 300
    assert high.costs["simulated_time_spent"] == pytest.approx(time[400] - time[100])
    assert high.metrics["accuracy"] == table.accuracy(key, seed=1, budget=400)
    assert high.artifact is None                                    # not asked for
    scratch = evaluator(candidate, Context(seed=1, budget={"steps": 400}))
    assert scratch.costs["budget_spent"] == 400
    assert scratch.metrics == high.metrics


def test_a_bad_parent_is_refused_in_one_line(v2, v1):
    _, candidate, _ = v2
    evaluator = TabularEvaluator(path=TABLE_V2_PATH)
    for parent in ({"steps": 400}, {"steps": 75}, {"step": 50}, {"steps": True}, [50]):
        with pytest.raises(memnas.ConfigError, match="ctx.resume must be {'steps': b}") as info:
            evaluator(candidate, Context(budget={"steps": 200}, resume=parent))
        assert "\n" not in str(info.value) and "[50, 100, 200, 400]" in str(info.value)
    with pytest.raises(memnas.ConfigError, match="none: a v1 table"):
        TabularEvaluator()(v1, Context(resume={"steps": 50}))


def test_without_a_budget_the_tables_training_steps_are_spent(v2, v1):
    _, candidate, _ = v2
    m = TabularEvaluator(path=TABLE_V2_PATH)(candidate, Context(checkpoint=True))
    assert m.costs["budget_spent"] == 400 and m.artifact == {"steps": 400}
    assert TabularEvaluator()(v1, Context()).costs["budget_spent"] == 400


def test_costs_are_the_rows_known_costs(v2, v1):
    table, candidate, key = v2
    evaluator = TabularEvaluator(path=TABLE_V2_PATH)
    known = evaluator.costs(candidate)
    assert set(known) == {"params", "state_bytes", "flops_per_token"}
    stored = evaluator(candidate, Context()).costs
    assert known == {k: stored[k] for k in known}
    assert costs_before_training(evaluator, candidate) == known
    assert set(TabularEvaluator().costs(v1)) == {"params"}      # a v1 row has no more
