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
