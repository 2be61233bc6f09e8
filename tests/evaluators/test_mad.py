"""Tests of the MAD task generators: determinism, shapes, answers that follow each rule."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from memnas.evaluators import (
    IGNORE_INDEX,
    Compression,
    FuzzyInContextRecall,
    InContextRecall,
    Memorization,
    NoisyInContextRecall,
    SelectiveCopying,
    mad_suite,
)

SMALL = mad_suite()
ALL = {**{f"small_{k}": v for k, v in SMALL.items()},
       **{f"paper_{k}": v for k, v in mad_suite("paper").items()}}


@pytest.mark.parametrize("task", ALL.values(), ids=ALL.keys())
def test_batches_are_deterministic_well_formed_and_scored(task: Any) -> None:
    x1, y1 = task.batch(8, seed=5)
    x2, y2 = task.batch(8, seed=5)
    x3, y3 = task.batch(8, seed=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not (torch.equal(x1, x3) and torch.equal(y1, y3))
    assert x1.shape == y1.shape == (8, task.seq_len)
    assert x1.dtype == y1.dtype == torch.int64
    assert 0 <= int(x1.min()) and int(x1.max()) < task.vocab_size
    scored = y1 != IGNORE_INDEX
    assert bool(scored.any(dim=1).all())  # every sequence is scored somewhere
    assert 0 <= int(y1[scored].min()) and int(y1[scored].max()) < task.vocab_size


def test_suite_names_and_scales() -> None:
    assert list(SMALL) == ["in_context_recall", "fuzzy_recall", "noisy_recall",
                           "selective_copying", "compression", "memorization"]
    assert mad_suite("paper")["selective_copying"] == SelectiveCopying(16, 256, 16)
    with pytest.raises(ValueError, match="'huge'"):
        mad_suite("huge")


def _check_recall_row(x: list[int], y: list[int], clean: int) -> tuple[int, int]:
    """Checks one (noisy) in-context recall row; returns (noise pairs, scored)."""
    half = clean // 2
    mapping: dict[int, int] = {}
    noise = scored = 0
    assert all(t == IGNORE_INDEX for t in y[1::2])  # value positions never targeted
    for i in range(0, len(x), 2):
        k, v = x[i], x[i + 1]
        if k >= clean:  # a noise pair: both tokens noise, never scored
            assert v >= clean and y[i] == IGNORE_INDEX
            noise += 1
            continue
        assert k < half <= v < clean
        if k in mapping:
            assert mapping[k] == v and y[i] == v  # the value paired with the key
            scored += 1
        else:
            assert y[i] == IGNORE_INDEX  # first sight of a key: nothing to recall
            mapping[k] = v
    assert y[-2] != IGNORE_INDEX  # the last pair is a probe
    return noise, scored


def test_in_context_recall_answers_are_the_keys_values() -> None:
    task = InContextRecall(vocab_size=16, seq_len=32)
    x, y = task.batch(64, seed=0)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        noise, _ = _check_recall_row(row_x, row_y, clean=16)
        assert noise == 0


def test_noisy_recall_noise_is_unscored_and_follows_its_fraction() -> None:
    def noise_fraction(frac: float) -> float:
        task = NoisyInContextRecall(vocab_size=32, seq_len=64, frac_noise=frac)
        x, y = task.batch(128, seed=1)
        total = sum(_check_recall_row(a, b, clean=16)[0] for a, b in zip(x.tolist(), y.tolist()))
        return total / (128 * 31)  # the last of 32 pair slots is never noise

    assert noise_fraction(0.0) == 0.0
    assert abs(noise_fraction(0.2) - 0.2) < 0.03
    assert abs(noise_fraction(0.6) - 0.6) < 0.03


def _runs(tokens: list[int], half: int) -> list[list[int]]:
    """Splits a pair stream into alternating key runs (< half) and value runs."""
    runs: list[list[int]] = []
    for t in tokens:
        if runs and (runs[-1][0] < half) == (t < half):
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


@pytest.mark.parametrize("task", [FuzzyInContextRecall(), FuzzyInContextRecall(32, 48, 2, 4)])
def test_fuzzy_recall_targets_follow_the_shifted_motifs(task: FuzzyInContextRecall) -> None:
    m = task.vocab_size - 1
    half = m // 2
    x, y = task.batch(64, seed=2)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        full = row_x + [row_y[-1]]  # the last value token only appears as a target
        body = full[full.index(next(t for t in full if t != m)):]
        assert set(full[: len(full) - len(body)]) <= {m} and m not in body
        runs = _runs(body, half)
        assert len(runs) % 2 == 0 and runs[0][0] < half  # key, value, key, value, ...
        mapping: dict[tuple[int, ...], tuple[int, ...]] = {}
        labels = [IGNORE_INDEX] * (len(full) - len(body))
        for key, value in zip(runs[0::2], runs[1::2]):
            assert 1 <= len(key) <= task.k_motif_size and len(set(key)) == len(key)
            assert 1 <= len(value) <= task.v_motif_size and len(set(value)) == len(value)
            seen = tuple(key) in mapping
            if seen:
                assert mapping[tuple(key)] == tuple(value)
            mapping[tuple(key)] = tuple(value)
            labels += [IGNORE_INDEX] * len(key) + (value if seen else [IGNORE_INDEX] * len(value))
        assert row_y == labels[1:]
        assert tuple(runs[-2]) in dict(zip(map(tuple, runs[0:-2:2]), runs[1:-2:2]))


def test_selective_copying_targets_are_the_data_tokens_in_order() -> None:
    task = SelectiveCopying(vocab_size=10, seq_len=40, num_tokens_to_copy=6)
    x, y = task.batch(32, seed=3)
    blank, copy, region = 8, 9, 40 - 6 - 1
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        data = [t for t in row_x[:region] if t != blank]
        assert len(data) == 6 and row_x[region] == copy
        assert row_x[region + 1 :] == [blank] * 6
        assert row_y[: region + 1] == [IGNORE_INDEX] * (region + 1) and row_y[region + 1 :] == data
    first_places = (x[:, :region] != blank).float().argmax(1)
    assert len(set(first_places.tolist())) > 3  # data tokens are spread, not at fixed places


def test_compression_reads_the_sequence_back_after_the_marker() -> None:
    task = Compression(vocab_size=12, seq_len=20)
    x, y = task.batch(16, seed=4)
    assert torch.equal(y[:, 10:], x[:, :10])
    assert bool((x[:, 10] == 11).all()) and bool((x[:, 11:] == 10).all())
    assert bool((y[:, :10] == IGNORE_INDEX).all()) and int(x[:, :10].max()) < 10


def test_memorization_uses_one_fixed_bijection() -> None:
    task = Memorization(vocab_size=33, seq_len=16)
    mapping = task.mapping()
    assert sorted(mapping) == list(range(16)) and sorted(mapping.values()) == list(range(16, 32))
    for seed in (0, 1):
        x, y = task.batch(32, seed=seed)
        assert bool((x[:, 1::2] == 32).all()) and bool((y[:, 0::2] == IGNORE_INDEX).all())
        keys, values = x[:, 0::2].flatten().tolist(), y[:, 1::2].flatten().tolist()
        assert all(mapping[k] == v for k, v in zip(keys, values))
    assert Memorization(vocab_size=33, seq_len=16, map_seed=1).mapping() != mapping


def test_bigger_vocabularies_make_recall_sparser() -> None:
    def scored_fraction(vocab: int) -> float:
        _, y = InContextRecall(vocab_size=vocab, seq_len=64).batch(256, seed=0)
        return float((y != IGNORE_INDEX).float().mean())

    assert scored_fraction(16) > scored_fraction(64) > scored_fraction(256)  # fewer repeats


@pytest.mark.parametrize("make, match", [
    (lambda: InContextRecall(seq_len=7), "seq_len=7"),
    (lambda: NoisyInContextRecall(frac_noise=1.0), "frac_noise"),
    (lambda: NoisyInContextRecall(vocab_size=17, noise_vocab_size=16), "vocab_size=17"),
    (lambda: FuzzyInContextRecall(seq_len=12), "seq_len=12"),
    (lambda: FuzzyInContextRecall(vocab_size=6), "k_motif_size=3"),
    (lambda: SelectiveCopying(seq_len=17, num_tokens_to_copy=8), "seq_len=17"),
    (lambda: Compression(seq_len=9), "seq_len=9"),
    (lambda: Memorization(vocab_size=2), "vocab_size=2"),
])
def test_bad_configs_are_named(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_generation_is_fast_enough_for_training() -> None:
    for task in SMALL.values():
        start = time.perf_counter()
        task.batch(32, seed=0)
        assert time.perf_counter() - start < 0.5, task
