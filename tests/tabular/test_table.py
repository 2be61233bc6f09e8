"""The shipped MQAR memory table and `TabularEvaluator`."""

from __future__ import annotations

import math
import pickle

import pyglove as pg
import pytest

import memnas
from memnas.tabular import TabularEvaluator, dna_key, load_table, tabular_space, top_threshold
from memnas.tabular.table import TABLE_SEEDS, all_dnas, space_hash
from memnas.measurement import Context
from memnas.searchspace.mixers import SoftmaxAttention
from memnas.searchspace.model import Block, SequenceModel


@pytest.fixture(scope="module")
def table():
    return load_table()


def test_table_covers_the_whole_space(table):
    space = tabular_space()
    keys = [dna_key(d) for d in all_dnas(space)]
    assert len(keys) == len(set(keys)) == pg.dna_spec(space).space_size
    assert 200 <= len(keys) <= 400
    assert set(table.rows) == set(keys)
    assert table.metadata["space_hash"] == space_hash(space)
    assert table.metadata["seeds"] == list(TABLE_SEEDS)
    for row in table.rows.values():
        assert set(row["seeds"]) == {str(s) for s in TABLE_SEEDS}
        assert row["params"] > 0
        for result in row["seeds"].values():
            assert 0.0 <= result["accuracy"] <= 1.0
            assert math.isfinite(result["loss"]) and result["train_time_s"] > 0


def test_landscape_is_varied(table):
    accuracies = sorted(table.accuracies().values())
    assert accuracies[-1] > 0.9  # some architectures solve MQAR
    assert accuracies[len(accuracies) // 2] < 0.7  # most do not
    top = sum(a >= table.top_threshold() for a in accuracies)
    assert top >= math.ceil(0.01 * len(accuracies))
    assert top_threshold() == table.top_threshold(0.01)


def test_tabular_evaluator_answers_from_the_table(table):
    space = tabular_space()
    dna = all_dnas(space)[37]
    candidate = pg.materialize(space, dna)
    row = table.rows[dna_key(dna)]
    evaluator = pickle.loads(pickle.dumps(TabularEvaluator()))
    m = evaluator(candidate, Context(seed=5))
    mean = sum(s["accuracy"] for s in row["seeds"].values()) / len(row["seeds"])
    assert m.metrics["accuracy"] == pytest.approx(mean)
    assert m.costs["params"] == row["params"]
    per_seed = TabularEvaluator(seed_mode="trial")
    for seed in (4, 5):
        m = per_seed(candidate, Context(seed=seed))
        assert m.metrics["accuracy"] == row["seeds"][str(seed % 2)]["accuracy"]
        assert m.costs["simulated_time"] == row["seeds"][str(seed % 2)]["train_time_s"]


def test_tabular_evaluator_refuses_a_foreign_candidate():
    foreign = SequenceModel(vocab_size=64, d_model=64, max_len=16,
                            layers=[Block(mixer=SoftmaxAttention(num_heads=4), mlp_ratio=2)])
    with pytest.raises(memnas.ConfigError, match="not in the benchmark table") as info:
        TabularEvaluator()(foreign, Context())
    assert "\n" not in str(info.value) and "d=64" in str(info.value)
    with pytest.raises(memnas.ConfigError, match="seed_mode"):
        TabularEvaluator(seed_mode="median")


def test_experiment_with_tabular_evaluator_runs_through_the_driver(sqlite_url, table):
    exp = memnas.Experiment(name="tabular", space=tabular_space(), evaluator=TabularEvaluator(),
                            algorithm="evolution", objectives={"accuracy": "max", "params": "min"},
                            store=sqlite_url, seed=1)
    df = exp.run(max_trials=25, workers=2, executor="local").trials()
    assert len(df) == 25 and set(df["status"]) <= {"completed", "cached"}
    best = df["accuracy"].max()
    assert best <= max(table.accuracies().values()) + 1e-12
    assert (df["simulated_time"] > 0).all()
