"""Test of experiments/zoology_claim.py on a tiny table with real MQAR and LM rows."""

from __future__ import annotations

import importlib.util
import os

import pandas as pd
import pytest

from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import memory_space
from memnas.searchspace.mixers import LinearAttention, SoftmaxAttention
from memnas.tabular.build_table import build_table
from memnas.tabular.lm_rows import add_lm_rows

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "zoology_claim.py")


def _load():
    spec = importlib.util.spec_from_file_location("zoology_claim", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_on_a_tiny_table(tmp_path, capsys) -> None:
    space = memory_space(vocab_size=16, max_len=8, max_layers=2, d_model=(16,), mlp_ratio=(1,),
                         mixers=[SoftmaxAttention(num_heads=2), LinearAttention(num_heads=2)])
    trainer = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2), steps=4,
                             batch_size=4, eval_examples=16, eval_at=(2,))
    out = str(tmp_path / "t.json.gz")
    build_table(out, space=space, trainer=trainer, executor="local", store=f"sqlite:///{tmp_path}/b.db")
    add_lm_rows(out, settings={"steps": 10, "seq_len": 32, "max_bytes": 100_000,
                               "eval_examples": 4}, executor="local",
                store=f"sqlite:///{tmp_path}/lm.db")
    exp = _load()
    figures = exp.measure(out)
    assert figures["lm_rows"] == 4 and -1 <= figures["spearman"] <= 1
    assert "Spearman(MQAR accuracy, bits per byte)" in capsys.readouterr().out


def test_gaps_and_spearman_on_known_values() -> None:
    exp = _load()
    df = pd.DataFrame({"kind": ["kv-cache", "fixed-state", "kv-cache", "fixed-state"],
                       "state": [100.0, 120.0, 5000.0, 20.0], "acc": [1.0, 0.4, 0.9, 0.1]})
    g = exp.gaps(df, "state", "acc", "max")
    assert list(g.index) == ["<256 B"] and g.loc["<256 B", "gap"] == pytest.approx(0.6)
    assert exp.spearman(pd.Series([1, 2, 3]), pd.Series([3, 2, 1])) == pytest.approx(-1.0)
