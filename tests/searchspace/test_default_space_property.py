"""Property test: random DNAs of the whole default space build, train, cost and hash."""

from __future__ import annotations

import math
import random

import pyglove as pg
import pytest
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.hashing import functional_hash, symbolic_hash
from memnas.searchspace import memory_space, registered_mixers

VOCAB, T = 16, 16


@pytest.mark.parametrize("seed", range(4))
def test_random_dnas_of_the_default_space_build_train_and_hash(seed: int) -> None:
    space = memory_space(VOCAB, max_layers=2, d_model=(16, 32), max_len=T)
    spec = pg.dna_spec(space)
    rng = random.Random(seed)
    evaluator = TrainEvaluator(task=MQAR(vocab_size=VOCAB, seq_len=T, num_kv_pairs=2), steps=2,
                               batch_size=2, eval_examples=4, latency_batch_size=1)
    for _ in range(6):
        dna = pg.random_dna(spec, rng)
        candidate = pg.materialize(space, dna)
        m = evaluator(candidate)
        assert {"params", "latency_ms", "flops_per_token", "state_bytes"} <= set(m.costs), candidate
        assert m.costs["state_bytes"] > 0 and m.costs["flops_per_token"] > 0
        assert math.isfinite(m.metrics["loss"]) and 0 <= m.metrics["accuracy"] <= 1
        assert symbolic_hash(candidate) == symbolic_hash(pg.materialize(space, dna))
        assert isinstance(functional_hash(candidate), str)


def test_every_registered_mixer_says_its_state_size() -> None:
    for name, cls in registered_mixers().items():
        mixer_space = cls.space()
        first = (mixer_space if pg.is_deterministic(mixer_space)
                 else pg.materialize(mixer_space, pg.dna_spec(mixer_space).first_dna()))
        numbers = first.state_numbers(32, 64)
        assert isinstance(numbers, int) and numbers > 0, name
