"""Test of `memnas bench table` on a small table built for real, with hand-added LM rows."""

from __future__ import annotations

import json

import pytest

from memnas.bench import available
from memnas.bench import table as bench
from memnas.errors import ConfigError
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import memory_space
from memnas.searchspace.mixers import LinearAttention, SoftmaxAttention
from memnas.tabular.build_table import build_table
from memnas.tabular.table import TABLE_PATH, load_table, save_table


def test_summary_of_a_table_with_budgets(tmp_path, sqlite_url, capsys) -> None:
    import pyglove as pg

    space = memory_space(vocab_size=16, max_len=8, max_layers=1, d_model=(16,), mlp_ratio=(1,),
                         mixers=[SoftmaxAttention(num_heads=pg.oneof([1, 2])),
                                 LinearAttention(num_heads=pg.oneof([1, 2]))])
    trainer = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2), steps=6,
                             batch_size=4, eval_examples=16, eval_at=(2, 4))
    out = str(tmp_path / "t.json.gz")
    table = build_table(out, space=space, trainer=trainer, store=sqlite_url, executor="local")
    keys = sorted(table.rows)
    # Bits per byte for three rows, ranked exactly against their accuracy: rho = -1.
    ranked = sorted(keys, key=table.accuracy)
    for i, key in enumerate(ranked[:3]):
        table.rows[key]["lm"] = {"bits_per_byte": 5.0 - i - 1e-3 * table.accuracy(key)}
    save_table(table, out)
    figures = bench.run(path=out)
    json.dumps(figures)
    assert figures["architectures"] == 4 and figures["budgets"] == [2, 4, 6]
    assert figures["lm_rows"] == 3
    assert {"state_bytes", "flops_per_token"} <= set(figures["objectives"])
    assert set(figures["families"]) == {"attn", "linear"}
    accs = [table.accuracy(k) for k in ranked[:3]]
    if len(set(accs)) == 3:
        assert figures["spearman_mqar_vs_bpb"] == pytest.approx(-1.0)
    assert "Spearman" in capsys.readouterr().out
    assert "table" in available()


def test_a_v1_table_is_refused_by_name() -> None:
    assert load_table(TABLE_PATH).budgets == []
    with pytest.raises(ConfigError, match="v1"):
        bench.run(path=TABLE_PATH)


def test_spearman_ranks_with_ties() -> None:
    assert bench._spearman([0.1, 0.5, 0.9], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert bench._spearman([0.1, 0.5, 0.9, 0.2], [1.0, 2.0, 3.0, 1.5]) == pytest.approx(1.0)
    # Ties get average ranks: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3).
    assert bench._spearman([0.2, 0.2, 0.9], [1.0, 2.0, 3.0]) == pytest.approx(0.8660254)
