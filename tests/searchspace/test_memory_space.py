"""Tests of the `memory_space` search space and the `SequenceModel` spec."""

from __future__ import annotations

import pickle
import random

import pyglove as pg
import pytest
import torch

from memnas.searchspace import (
    Block,
    HopfieldLayer,
    LinearAttention,
    SequenceModel,
    SoftmaxAttention,
    memory_space,
)

VOCAB = 32


def _samples(space, n: int, seed: int = 0) -> list[SequenceModel]:
    spec = pg.dna_spec(space)
    rng = random.Random(seed)
    return [pg.materialize(space, pg.random_dna(spec, rng)) for _ in range(n)]


@pytest.fixture(scope="module")
def default_space() -> tuple:
    """The default space (every registered mixer, up to 3 layers) and 5 random candidates of
    it, shared by the tests that only read them: materializing a DNA of it is the slow part."""
    space = memory_space(VOCAB, max_layers=3, max_len=16)
    return space, _samples(space, 5)


def test_dna_spec_has_decisions(default_space) -> None:
    spec = pg.dna_spec(default_space[0])
    assert spec.space_size > 1000
    assert spec.first_dna() is not None


def test_random_samples_build_and_run(default_space) -> None:
    space, samples = default_space
    candidates = samples + list(pg.random_sample(space, 2, seed=1))
    tokens = torch.randint(0, VOCAB, (2, 16))
    depths = set()
    for c in candidates:
        assert isinstance(c, SequenceModel) and not pg.is_abstract(c)
        assert c.d_model in (16, 32, 64) and 1 <= len(c.layers) <= 3
        depths.add(len(c.layers))
        logits = c.build()(tokens)
        assert logits.shape == (2, 16, VOCAB)
        assert c.summary().startswith(f"d={c.d_model} | ")
    assert len(depths) > 1


def test_json_and_pickle_round_trip(default_space) -> None:
    for c in default_space[1]:
        assert pg.eq(pg.from_json_str(pg.to_json_str(c)), c)
        assert pg.eq(pickle.loads(pickle.dumps(c)), c)


def test_dna_round_trip(default_space) -> None:
    space = default_space[0]
    spec = pg.dna_spec(space)
    dna = pg.random_dna(spec, random.Random(3))
    c = pg.materialize(space, dna)
    from_json = pg.from_json_str(pg.to_json_str(dna))
    from_numbers = pg.DNA.from_numbers(dna.to_numbers(), spec)
    assert pg.eq(pg.materialize(space, from_json), c)
    assert pg.eq(pg.materialize(space, from_numbers), c)


def test_space_options() -> None:
    space = memory_space(
        VOCAB, max_layers=2, min_layers=2, d_model=(32,), mlp_ratio=(0,), mixers=["LinearAttention"]
    )
    for c in pg.iter(space, 5):
        assert len(c.layers) == 2 and c.d_model == 32
        assert all(isinstance(b.mixer, LinearAttention) and b.mlp_ratio == 0 for b in c.layers)
    pinned = memory_space(VOCAB, max_layers=1, mixers=[SoftmaxAttention(num_heads=2)])
    assert all(c.layers[0].mixer.num_heads == 2 for c in pg.iter(pinned, 5))
    nested = memory_space(
        VOCAB, max_layers=1, mixers=[pg.oneof([SoftmaxAttention(1), HopfieldLayer(1, 2.0)])]
    )
    kinds = {type(c.layers[0].mixer) for c in pg.iter(nested)}
    assert kinds == {SoftmaxAttention, HopfieldLayer}


def test_space_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_heads=4 does not divide d_model=18"):
        memory_space(VOCAB, d_model=(16, 18))
    with pytest.raises(ValueError, match="min_layers=3"):
        memory_space(VOCAB, min_layers=3, max_layers=2)
    with pytest.raises(TypeError, match="mixer choice"):
        memory_space(VOCAB, mixers=[42])


def test_summary() -> None:
    c = SequenceModel(
        vocab_size=VOCAB,
        d_model=32,
        layers=[Block(SoftmaxAttention(2)), Block(LinearAttention(1, "elu+1"))],
    )
    assert c.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2"
    c2 = c.clone(override={"layers[1].mlp_ratio": 4, "layers[1].mixer": HopfieldLayer(2, 0.5)})
    assert c2.summary() == "d=32 | attn(h=2) > hopfield(h=2,b=0.5) | mlp x2,x4"


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "none"])
def test_positions(positions: str) -> None:
    c = SequenceModel(VOCAB, 16, [Block(SoftmaxAttention(1), 1)], positions=positions, max_len=8)
    model = c.build()
    assert model(torch.randint(0, VOCAB, (1, 8))).shape == (1, 8, VOCAB)
    if positions == "learned":
        with pytest.raises(ValueError, match="max_len=8"):
            model(torch.randint(0, VOCAB, (1, 9)))


def test_build_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="'rotary'"):
        SequenceModel(VOCAB, 16, [Block(SoftmaxAttention())], positions="rotary").build()
    with pytest.raises(ValueError, match="num_heads=4, d_model=18"):
        SequenceModel(VOCAB, 18, [Block(SoftmaxAttention(4))]).build()


def test_tied_embeddings_share_weights() -> None:
    model = SequenceModel(VOCAB, 16, [Block(SoftmaxAttention())], tie_embeddings=True).build()
    assert model.head.weight is model.embed.weight
