"""Tests of the cost metrics: state size, FLOPs per token (counter vs exact formulas), stored costs."""

from __future__ import annotations

import pytest
import torch

from memnas.evaluators import MQAR, TrainEvaluator, flops_per_token, state_bytes
from memnas.searchspace.mixers import LinearAttention, SoftmaxAttention
from memnas.searchspace.model import Block, SequenceModel

V, D, T = 10, 32, 48


def _model(mixer, mlp_ratio: int = 2, layers: int = 1, max_len: int = T) -> SequenceModel:
    return SequenceModel(vocab_size=V, d_model=D, max_len=max_len,
                         layers=[Block(mixer=mixer, mlp_ratio=mlp_ratio) for _ in range(layers)])


def _dense_flops(mlp_ratio: int, layers: int) -> int:
    """Per token: q, k, v and output projections, the MLP (two matmuls), the head."""
    per_layer = 2 * D * 3 * D + 2 * D * D + 2 * 2 * D * mlp_ratio * D
    return layers * per_layer + 2 * D * V


@pytest.mark.parametrize("heads,layers", [(1, 1), (2, 2), (4, 1)])
def test_flop_counter_matches_the_exact_formula_for_softmax_attention(heads, layers) -> None:
    spec = _model(SoftmaxAttention(num_heads=heads), layers=layers)
    tokens = torch.randint(0, V, (1, T))
    # Scores q k^T and the weighted sum, over the full T x T matrix (as torch counts).
    attention = layers * 2 * 2 * T * D
    assert flops_per_token(spec.build(), tokens) == _dense_flops(2, layers) + attention


@pytest.mark.parametrize("heads", [1, 2])
def test_flop_counter_matches_the_exact_formula_for_chunked_linear_attention(heads) -> None:
    spec = _model(LinearAttention(num_heads=heads), mlp_ratio=1)
    tokens = torch.randint(0, V, (1, T))  # T <= 64: one chunk, the masked quadratic form
    d_head = D // heads
    # q k^T per head, then scores times [v, 1] (the normaliser's column).
    mixing = heads * (2 * T * d_head + 2 * T * (d_head + 1))
    assert flops_per_token(spec.build(), tokens) == _dense_flops(1, 1) + mixing


def test_state_bytes_is_the_kv_cache_for_attention_and_fixed_for_recurrent_mixers() -> None:
    attention = _model(SoftmaxAttention(num_heads=2), layers=2)
    assert state_bytes(attention) == 2 * 2 * T * D * 4  # layers x (k, v) x tokens x width x fp32
    window = _model(SoftmaxAttention(num_heads=2, window=8))
    assert state_bytes(window, element_size=2) == 2 * 8 * D * 2
    longer = _model(SoftmaxAttention(num_heads=2), max_len=4 * T)
    assert state_bytes(longer) == 4 * state_bytes(_model(SoftmaxAttention(num_heads=2)))
    linear = _model(LinearAttention(num_heads=2))
    assert state_bytes(linear) == 2 * 16 * 17 * 4
    assert state_bytes(_model(LinearAttention(num_heads=2), max_len=4 * T)) == state_bytes(linear)
    assert state_bytes(object()) is None


def test_a_trained_trial_stores_every_cost() -> None:
    spec = SequenceModel(vocab_size=16, d_model=16, max_len=12,
                         layers=[Block(mixer=SoftmaxAttention(num_heads=2))])
    evaluator = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2), steps=3,
                               batch_size=4, eval_examples=8)
    costs = evaluator(spec).costs
    assert set(costs) == {"params", "latency_ms", "flops_per_token", "state_bytes"}
    assert costs["state_bytes"] == 2 * 12 * 16 * 4
    assert costs["flops_per_token"] == flops_per_token(spec.build(), torch.zeros(1, 12, dtype=torch.long))
    assert costs["params"] > 0 and costs["latency_ms"] > 0
