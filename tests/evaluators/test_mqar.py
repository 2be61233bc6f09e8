"""Tests of the `MQAR` task generator."""

from __future__ import annotations

import pytest
import torch

from memnas.evaluators import IGNORE_INDEX, MQAR


def test_same_seed_same_data() -> None:
    task = MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4)
    x1, y1 = task.batch(16, seed=7)
    x2, y2 = task.batch(16, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = task.batch(16, seed=8)
    assert not torch.equal(x1, x3)
    assert x1.dtype == y1.dtype == torch.int64
    assert x1.shape == y1.shape == (16, 32)


@pytest.mark.parametrize("task", [
    MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4),
    MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4),
    MQAR(vocab_size=200, seq_len=64, num_kv_pairs=8, power_a=1.0),
    MQAR(vocab_size=16, seq_len=24, num_kv_pairs=3, random_non_queries=False),
])
def test_targets_are_the_values_of_queried_keys(task: MQAR) -> None:
    inputs, targets = task.batch(64, seed=0)
    kv, half = task.num_kv_pairs, task.vocab_size // 2
    assert 0 <= int(inputs.min()) and int(inputs.max()) < task.vocab_size
    for x, y in zip(inputs.tolist(), targets.tolist()):
        keys, values = x[0 : 2 * kv : 2], x[1 : 2 * kv : 2]
        assert len(set(keys)) == kv and len(set(values)) == kv
        assert all(1 <= k < half for k in keys)
        assert all(half <= v < task.vocab_size for v in values)
        pairs = dict(zip(keys, values))
        answers = [t for t, target in enumerate(y) if target != IGNORE_INDEX]
        assert len(answers) == kv
        assert all(t >= 2 * kv and (t - 2 * kv) % 2 == 0 for t in answers)
        assert sorted(x[t] for t in answers) == sorted(keys)  # each key queried once
        assert all(y[t] == pairs[x[t]] for t in answers)
        if not task.random_non_queries:
            filler = set(range(2 * kv, task.seq_len)) - set(answers)
            assert all(x[t] == 0 for t in filler)


def test_short_gaps_are_likelier() -> None:
    task = MQAR(vocab_size=64, seq_len=64, num_kv_pairs=2)
    _, targets = task.batch(2000, seed=0)
    counts = (targets != IGNORE_INDEX).sum(0)
    assert counts[4] > counts[30] > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"seq_len": 15, "num_kv_pairs": 2}, "seq_len=15"),
    ({"seq_len": 16, "num_kv_pairs": 5}, "num_kv_pairs=5"),
    ({"vocab_size": 8, "seq_len": 32, "num_kv_pairs": 4}, "vocab_size=8"),
])
def test_bad_configs_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MQAR(**kwargs)
