"""`build_table` trains a tiny space for real into a table file."""

from __future__ import annotations

import pyglove as pg

from memnas.tabular import TabularEvaluator, dna_key, load_table
from memnas.tabular.build_table import build_table, main, table_trainer
from memnas.tabular.table import all_dnas
from memnas.measurement import Context
from memnas.searchspace import memory_space
from memnas.searchspace.mixers import LinearAttention, SoftmaxAttention


def _tiny_space():
    return memory_space(vocab_size=64, max_len=16, max_layers=1, d_model=(16,), mlp_ratio=(1,),
                        mixers=[SoftmaxAttention(num_heads=pg.oneof([1, 2])), LinearAttention()])


def test_build_table_on_a_tiny_space(tmp_path, sqlite_url):
    out = str(tmp_path / "tiny.json.gz")
    space = _tiny_space()
    table = build_table(out, space=space, trainer=table_trainer(steps=4), store=sqlite_url,
                        executor="local")
    keys = {dna_key(d) for d in all_dnas(space)}
    assert set(table.rows) == keys and len(keys) == 3
    loaded = load_table(out)
    assert loaded.rows == table.rows
    assert loaded.metadata["training"]["steps"] == 4
    assert loaded.metadata["task"]["num_kv_pairs"] == 4
    row = next(iter(loaded.rows.values()))
    assert row["seeds"]["0"]["loss"] != row["seeds"]["1"]["loss"]  # two real trainings
    dna = all_dnas(space)[2]
    m = TabularEvaluator(path=out)(pg.materialize(space, dna), Context())
    assert m.metrics["loss"] == loaded._value(dna_key(dna), "loss", None)


def test_build_table_command_writes_the_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmd.json.gz"
    import memnas.tabular.build_table as module

    monkeypatch.setattr(module, "tabular_space", _tiny_space)
    assert main(["--out", str(out), "--steps", "3", "--executor", "local"]) == 0
    assert out.exists() and "3 architectures x 2 seeds" in capsys.readouterr().out


def test_build_a_table_with_budgets_and_answer_any_budget(tmp_path, sqlite_url):
    from memnas.evaluators import MQAR, TrainEvaluator
    from memnas.errors import ConfigError

    out = str(tmp_path / "v2.json.gz")
    space = _tiny_space()
    trainer = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=12,
                             batch_size=8, eval_examples=32, eval_at=(3, 6, 12))
    table = build_table(out, space=space, trainer=trainer, store=sqlite_url, executor="local")
    assert table.budgets == [3, 6, 12] and table.metadata["version"] == 2
    assert {"state_bytes", "flops_per_token", "params"} <= set(table.metadata["objectives"])
    key = dna_key(all_dnas(space)[0])
    row = table.rows[key]
    assert row["state_bytes"] > 0 and row["flops_per_token"] > 0
    curve = row["seeds"]["0"]["budgets"]
    assert curve["12"]["accuracy"] == row["seeds"]["0"]["accuracy"]
    assert curve["3"]["train_time_s"] < curve["6"]["train_time_s"] < curve["12"]["train_time_s"]
    evaluator = TabularEvaluator(path=out)
    candidate = pg.materialize(space, all_dnas(space)[0])
    early = evaluator(candidate, Context(budget={"steps": 3}))
    full = evaluator(candidate, Context())
    assert early.metrics["accuracy"] == table.accuracy(key, budget=3)
    assert full.metrics["accuracy"] == table.accuracy(key)
    assert early.costs["simulated_time"] < full.costs["simulated_time"]
    assert full.costs["state_bytes"] == row["state_bytes"]
    try:
        evaluator(candidate, Context(budget={"steps": 5}))
    except ConfigError as e:
        assert "steps=5" in str(e) and "[3, 6, 12]" in str(e)
    else:
        raise AssertionError("an unknown budget must be refused")
    assert load_table().budgets == []  # v1 stays loadable, without budgets


def test_the_v2_space_has_544_architectures_of_the_second_wave_mixers():
    from memnas.tabular.v2 import TABLE_V2_BUDGETS, table_v2_trainer, tabular_space_v2

    space = tabular_space_v2()
    assert pg.dna_spec(space).space_size == 544
    kinds = {type(c.layers[0].mixer).__name__ for c in pg.random_sample(space, 40, seed=0)}
    assert {"SoftmaxAttention", "LinearAttention", "DeltaNet", "GatedDeltaNet",
            "GatedLinearAttention", "Retention", "Mamba2", "MLSTM", "HopfieldLayer"} <= kinds
    assert table_v2_trainer().eval_at == TABLE_V2_BUDGETS
