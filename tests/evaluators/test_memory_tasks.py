"""Tests of `NParity`, `DelayedMatchToSample` and the MQAR difficulty levels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from memnas.evaluators import (
    IGNORE_INDEX,
    MQAR,
    MQAR_LEVELS,
    DelayedMatchToSample,
    NParity,
    mqar_levels,
    quickstart_evaluator,
)

TASKS = {
    "parity1": NParity(horizon=1, seq_len=8),
    "parity5": NParity(horizon=5, seq_len=24),
    "dms1": DelayedMatchToSample(horizon=1, num_symbols=2, seq_len=8),
    "dms6": DelayedMatchToSample(horizon=6, num_symbols=5, seq_len=30, match_prob=0.3),
    **mqar_levels(),
}


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS.keys())
def test_batches_are_deterministic_and_well_formed(task: Any) -> None:
    x1, y1 = task.batch(16, seed=3)
    x2, y2 = task.batch(16, seed=3)
    x3, _ = task.batch(16, seed=4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == y1.shape == (16, task.seq_len) and x1.dtype == y1.dtype == torch.int64
    assert 0 <= int(x1.min()) and int(x1.max()) < task.vocab_size
    scored = y1 != IGNORE_INDEX
    assert 0 <= int(y1[scored].min()) and int(y1[scored].max()) < task.vocab_size


def _window_parity(bits: np.ndarray, width: int) -> np.ndarray:
    """Parity of the last ``width`` bits at every position >= width - 1, by brute force."""
    n, t = bits.shape
    return np.stack([bits[:, s - width + 1 : s + 1].sum(1) % 2 for s in range(width - 1, t)], 1)


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_parity_targets_are_the_window_parities(horizon: int) -> None:
    task = NParity(horizon=horizon, seq_len=20)
    x, y = task.batch(64, seed=0)
    bits = x.numpy()
    assert set(np.unique(bits)) <= {0, 1} and task.vocab_size == 2
    assert bool((y[:, : horizon - 1] == IGNORE_INDEX).all())
    assert np.array_equal(y[:, horizon - 1 :].numpy(), _window_parity(bits, horizon))


def test_parity_needs_the_whole_horizon() -> None:
    """Remembering one bit fewer than the horizon predicts the answer at chance."""
    horizon = 4
    x, y = NParity(horizon=horizon, seq_len=64).batch(512, seed=1)
    bits, answers = x.numpy(), y[:, horizon - 1 :].numpy()
    short = _window_parity(bits, horizon - 1)[:, 1:]  # the last horizon - 1 bits
    assert abs((short == answers).mean() - 0.5) < 0.02


@pytest.mark.parametrize("horizon", [1, 3, 7])
def test_delayed_match_targets_compare_with_n_steps_back(horizon: int) -> None:
    task = DelayedMatchToSample(horizon=horizon, num_symbols=6, seq_len=24)
    x, y = task.batch(64, seed=0)
    assert task.vocab_size == 8 and int(x.max()) < 6
    assert bool((y[:, :horizon] == IGNORE_INDEX).all())
    match = (x[:, horizon:] == x[:, :-horizon]).long()
    assert torch.equal(y[:, horizon:], 6 + match)


def test_delayed_match_is_balanced_and_needs_the_whole_horizon() -> None:
    task = DelayedMatchToSample(horizon=4, num_symbols=8, seq_len=64, match_prob=0.5)
    x, y = task.batch(512, seed=2)
    answers = y[:, 4:] - 8
    rate = float(answers.float().mean())
    assert abs(rate - (0.5 + 0.5 / 8)) < 0.02  # forced repeats plus chance repeats
    wrong_lag = (x[:, 4:] == x[:, 1:-3]).long()  # comparing 3 steps back instead of 4
    assert float((wrong_lag == answers).float().mean()) < 0.6
    assert DelayedMatchToSample(match_prob=0.0).batch(256, 0)[1][:, 4:].float().mean() < 8.2


@pytest.mark.parametrize("make, match", [
    (lambda: NParity(horizon=0), "horizon=0"),
    (lambda: NParity(horizon=9, seq_len=8), "horizon=9"),
    (lambda: DelayedMatchToSample(horizon=8, seq_len=8), "horizon=8"),
    (lambda: DelayedMatchToSample(num_symbols=1), "num_symbols=1"),
    (lambda: DelayedMatchToSample(match_prob=1.5), "1.5"),
])
def test_bad_configs_are_named(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_mqar_levels() -> None:
    levels = mqar_levels()
    assert list(levels) == ["easy", "medium", "hard"] == list(MQAR_LEVELS)
    assert levels["easy"] == quickstart_evaluator().task == MQAR.level("easy")
    assert MQAR.level("hard", power_a=1.0) == MQAR(256, 64, 16, power_a=1.0)
    with pytest.raises(ValueError, match="'extreme'.*'easy', 'hard', 'medium'"):
        MQAR.level("extreme")


def test_harder_mqar_levels_hold_more_pairs_over_longer_gaps() -> None:
    def load(task: MQAR) -> tuple[int, float]:
        x, y = task.batch(256, seed=0)
        rows, pos = torch.nonzero(y != IGNORE_INDEX, as_tuple=True)
        keys = x[rows, pos]
        key_pos = torch.stack([torch.nonzero(x[r, : 2 * task.num_kv_pairs : 2] == k)[0, 0]
                               for r, k in zip(rows.tolist(), keys.tolist())]) * 2
        return task.num_kv_pairs, float((pos - key_pos).float().mean())

    (kv_e, gap_e), (kv_m, gap_m), (kv_h, gap_h) = (load(t) for t in mqar_levels().values())
    assert kv_e < kv_m < kv_h and gap_e < gap_m < gap_h
