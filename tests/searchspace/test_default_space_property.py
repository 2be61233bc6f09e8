"""Property test: random DNAs of the whole default space build, train, cost and hash."""

from __future__ import annotations

import math
import random

import pyglove as pg
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.hashing import functional_hash, symbolic_hash
from memnas.searchspace import Block, SequenceModel, get_mixer, memory_space, registered_mixers

VOCAB, T = 16, 16


def test_dnas_covering_the_default_space_build_train_and_hash() -> None:
    """DNAs of the whole default space build, train, cost and hash.

    Coverage by construction: a stack of one layer and then stacks of two take every
    registered mixer in turn, each mixer with random choices of its own space, random MLP
    ratios and alternating widths; each candidate's DNA is its encoding
    in the space, which raises unless the candidate is a point of the space.
    """
    space = memory_space(VOCAB, max_layers=2, d_model=(16, 32), max_len=T)
    template = pg.template(space)
    names = list(registered_mixers())
    rng = random.Random(0)
    evaluator = TrainEvaluator(task=MQAR(vocab_size=VOCAB, seq_len=T, num_kv_pairs=2), steps=2,
                               batch_size=2, eval_examples=4, latency_batch_size=1)
    kinds, depths = set(), set()
    stacks = [names[:1]] + [names[k:k + 2] for k in range(1, len(names), 2)]
    for i, stack in enumerate(stacks):
        layers = []
        for name in stack:
            mixer_space = get_mixer(name).space()
            mixer = pg.materialize(mixer_space, pg.random_dna(pg.dna_spec(mixer_space), rng))
            layers.append(Block(mixer, rng.choice((1, 2, 4))))
        candidate = SequenceModel(VOCAB, (16, 32)[i % 2], layers, max_len=T)
        dna = template.encode(candidate)
        kinds.update(type(b.mixer).__name__ for b in candidate.layers)
        depths.add(len(candidate.layers))
        m = evaluator(candidate)
        assert {"params", "latency_ms", "flops_per_token", "state_bytes"} <= set(m.costs), candidate
        assert m.costs["state_bytes"] > 0 and m.costs["flops_per_token"] > 0
        assert math.isfinite(m.metrics["loss"]) and 0 <= m.metrics["accuracy"] <= 1
        assert symbolic_hash(candidate) == symbolic_hash(pg.materialize(space, dna))
        assert isinstance(functional_hash(candidate), str)
    assert kinds == set(names), "every registered mixer is trained"
    assert depths == {1, 2}


def test_every_registered_mixer_says_its_state_size() -> None:
    for name, cls in registered_mixers().items():
        mixer_space = cls.space()
        first = (mixer_space if pg.is_deterministic(mixer_space)
                 else pg.materialize(mixer_space, pg.dna_spec(mixer_space).first_dna()))
        numbers = first.state_numbers(32, 64)
        assert isinstance(numbers, int) and numbers > 0, name
