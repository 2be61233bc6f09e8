"""`add_lm_rows` trains a small table's homogeneous stacks on stdlib bytes and stores bits per byte."""

from __future__ import annotations

import pyglove as pg

from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import memory_space
from memnas.searchspace.mixers import LinearAttention, SoftmaxAttention
from memnas.tabular.build_table import build_table
from memnas.tabular.lm_rows import add_lm_rows, homogeneous_keys
from memnas.tabular.table import load_table


def test_lm_rows_on_a_tiny_table(tmp_path) -> None:
    space = memory_space(vocab_size=16, max_len=8, max_layers=2, d_model=(16,), mlp_ratio=(1,),
                         mixers=[SoftmaxAttention(num_heads=2), LinearAttention(num_heads=2)])
    trainer = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2), steps=4,
                             batch_size=4, eval_examples=16, eval_at=(2,))
    out = str(tmp_path / "t.json.gz")
    table = build_table(out, space=space, trainer=trainer, executor="local",
                        store=f"sqlite:///{tmp_path}/b.db")
    keys = homogeneous_keys(table)
    assert len(table) == 6 and len(keys) == 4  # attn, linear, attn > attn, linear > linear
    add_lm_rows(out, settings={"steps": 30, "seq_len": 32, "max_bytes": 200_000,
                               "eval_examples": 8}, executor="local",
                store=f"sqlite:///{tmp_path}/lm.db")
    loaded = load_table(out)
    with_lm = [k for k, r in loaded.rows.items() if r.get("lm")]
    assert sorted(with_lm) == keys
    for key in keys:
        lm = loaded.rows[key]["lm"]
        assert 0 < lm["bits_per_byte"] < 8.5 and lm["tokens_per_s"] > 0 and lm["state_bytes"] > 0
    assert loaded.metadata["lm"]["rows"] == 4 and loaded.metadata["lm"]["corpus_sha256"]
    # Attention's KV cache at seq_len 32 is stored with the LM row (not the MQAR one).
    attn = next(k for k in keys if loaded.rows[k]["summary"].count("attn") == 1)
    assert loaded.rows[attn]["lm"]["state_bytes"] == 2 * 32 * 16 * 4
    assert pg.dna_spec(loaded.space()).space_size == 6
