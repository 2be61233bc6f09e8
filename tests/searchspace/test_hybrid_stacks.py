"""Tests of hybrid stacks (channel mixer, norm placement per block) and of the whole space."""

from __future__ import annotations

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
    get_mixer,
    memory_space,
    registered_mixers,
)

VOCAB = 32



def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_defaults_are_the_pre_norm_mlp_block() -> None:
    block = Block(SoftmaxAttention(2))
    assert (block.channel_mixer, block.norm) == ("mlp", "pre")
    module = block.build(16)
    assert module.pre_norm and isinstance(module.mlp, torch.nn.Sequential)
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    expected = x + module.mixer(module.norm1(x))
    expected = expected + module.mlp(module.norm2(expected))
    torch.testing.assert_close(module(x), expected)


def test_post_norm_block() -> None:
    module = Block(SoftmaxAttention(2), norm="post").build(16)
    x = torch.randn(2, 5, 16)
    expected = module.norm1(x + module.mixer(x))
    expected = module.norm2(expected + module.mlp(expected))
    torch.testing.assert_close(module(x), expected)
    only_mixer = Block(LinearAttention(), mlp_ratio=0, norm="post").build(16)
    torch.testing.assert_close(only_mixer(x), only_mixer.norm1(x + only_mixer.mixer(x)))


def test_glu_block_has_about_the_mlps_parameters() -> None:
    for ratio in (1, 2, 4):
        mlp = Block(SoftmaxAttention(), ratio).build(48).mlp
        glu = Block(SoftmaxAttention(), ratio, channel_mixer="glu").build(48).mlp
        assert abs(_count(glu) - _count(mlp)) / _count(mlp) < 0.05
    glu = Block(SoftmaxAttention(), 2, channel_mixer="glu").build(16).mlp
    x = torch.randn(3, 16)
    gate, up = glu.gate_up(x).chunk(2, dim=-1)
    torch.testing.assert_close(glu(x), glu.down(torch.nn.functional.silu(gate) * up))


def test_block_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="'swiglu'"):
        Block(SoftmaxAttention(), channel_mixer="swiglu").build(16)
    with pytest.raises(ValueError, match="'sandwich'"):
        Block(SoftmaxAttention(), norm="sandwich").build(16)
    with pytest.raises(ValueError, match="norm choices"):
        memory_space(VOCAB, norm=("pre", "peri"))
    with pytest.raises(ValueError, match="channel_mixer choices"):
        memory_space(VOCAB, channel_mixer=())


def test_summary_shows_channel_mixers_and_norms() -> None:
    layers = [Block(SoftmaxAttention(2)), Block(LinearAttention(1, "elu+1"))]
    c = SequenceModel(vocab_size=VOCAB, d_model=32, layers=layers)
    assert c.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2"
    glu = c.clone(override={"layers[0].channel_mixer": "glu", "layers[1].channel_mixer": "glu"})
    assert glu.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | glu x2"
    mixed = c.clone(override={"layers[1].channel_mixer": "glu", "layers[1].mlp_ratio": 4})
    assert mixed.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2,glu x4"
    post = c.clone(override={"layers[0].norm": "post", "layers[1].norm": "post"})
    assert post.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2 | post-norm"
    half = c.clone(override={"layers[1].norm": "post"})
    assert half.summary() == "d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2 | norm pre,post"


def test_default_space_is_unchanged_by_the_new_choices() -> None:
    """Without the new arguments the blocks are pre-norm MLP blocks: no new decisions."""
    mixers = ["SoftmaxAttention", "LinearAttention", "HopfieldLayer"]
    plain = memory_space(vocab_size=64, max_len=16, mixers=mixers)
    explicit = memory_space(
        vocab_size=64, max_len=16, mixers=mixers, channel_mixer=["mlp"], norm=["pre"]
    )
    assert pg.eq(plain, explicit)
    searched = memory_space(
        vocab_size=64, max_len=16, mixers=mixers, channel_mixer=["mlp", "glu"], norm=["pre", "post"]
    )
    assert pg.dna_spec(searched).space_size > pg.dna_spec(plain).space_size
    for c in pg.random_sample(plain, 5, seed=0):
        assert all(b.channel_mixer == "mlp" and b.norm == "pre" for b in c.layers)


def test_layers_choose_independently() -> None:
    # Two cheap mixers keep the mixer a decision of each block; which mixers does not matter
    # to how the channel mixer and norm decisions are drawn, and materializing is cheaper.
    space = memory_space(
        VOCAB, max_layers=3, min_layers=3, mixers=["SoftmaxAttention", "LinearAttention"],
        channel_mixer=("mlp", "glu"), norm=("pre", "post"),
    )
    per_layer = [set() for _ in range(3)]  # (channel mixer, norm) drawn at each depth
    mixed = set()  # block choices that differ between the layers of one stack
    for c in pg.random_sample(space, 30, seed=0):
        for seen, b in zip(per_layer, c.layers):
            seen.add((b.channel_mixer, b.norm))
        mixed |= {f for f in ("channel_mixer", "norm")
                  if len({getattr(b, f) for b in c.layers}) > 1}
    every = {(m, n) for m in ("mlp", "glu") for n in ("pre", "post")}
    assert per_layer == [every] * 3, "each layer draws every (channel mixer, norm) pair"
    assert mixed == {"channel_mixer", "norm"}, "stacks mix channel mixers and norms across layers"


def test_random_candidates_of_the_whole_space_train() -> None:
    """Candidates of the full space (every registered mixer, every block choice) build and train.

    Coverage by construction: hybrid stacks of three layers take the registered mixers in
    turn (each with random choices of its own space), and the blocks' channel mixers, norms,
    MLP ratios and the widths vary across and within the stacks; encoding each candidate
    proves that it is a point of the space.
    """
    space = memory_space(
        vocab_size=VOCAB, max_len=32, channel_mixer=("mlp", "glu"), norm=("pre", "post")
    )
    template = pg.template(space)
    names = list(registered_mixers())
    rng = random.Random(0)
    tokens = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(0))
    kinds, blocks = set(), set()
    for i, start in enumerate(range(0, len(names), 3)):
        layers = []
        for j, name in enumerate(names[start:start + 3]):
            mixer_space = get_mixer(name).space()
            mixer = pg.materialize(mixer_space, pg.random_dna(pg.dna_spec(mixer_space), rng))
            layers.append(Block(mixer, rng.choice((1, 2, 4)), channel_mixer=("mlp", "glu")[j % 2],
                                norm=("pre", "post")[(i + j) % 2]))
        candidate = SequenceModel(VOCAB, (16, 32, 64)[i % 3], layers, max_len=32)
        template.encode(candidate)  # raises unless the candidate is a point of the space
        kinds.update(type(b.mixer).__name__ for b in candidate.layers)
        blocks.update((b.channel_mixer, b.norm) for b in candidate.layers)
        torch.manual_seed(i)
        model = candidate.build()
        logits = model(tokens)
        assert logits.shape == (2, 32, VOCAB), candidate.summary()
        assert torch.isfinite(logits).all(), candidate.summary()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens.reshape(-1))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), candidate.summary()
        assert all(g is None or torch.isfinite(g).all() for g in grads), candidate.summary()
    assert kinds == set(names), "every registered mixer is trained"
    assert blocks == {(m, n) for m in ("mlp", "glu") for n in ("pre", "post")}


def test_hopfield_positional_spec_still_builds() -> None:
    c = SequenceModel(VOCAB, 16, [Block(HopfieldLayer(2, 0.5)), Block(HopfieldLayer(1, "learned"))])
    assert c.build()(torch.randint(0, VOCAB, (1, 8))).shape == (1, 8, VOCAB)


def test_channel_mixer_kind_without_channel_mixer_hashes_equal() -> None:
    from memnas.hashing import symbolic_hash

    def model(kind: str, ratio: int) -> SequenceModel:
        return SequenceModel(VOCAB, 16, [Block(SoftmaxAttention(), ratio, channel_mixer=kind)])

    assert symbolic_hash(model("glu", 0)) == symbolic_hash(model("mlp", 0))
    assert symbolic_hash(model("glu", 2)) != symbolic_hash(model("mlp", 2))


def test_a_window_covering_max_len_hashes_as_full_attention() -> None:
    from memnas.hashing import symbolic_hash

    def model(window: int | None, positions: str = "learned") -> SequenceModel:
        layers = [Block(SoftmaxAttention(2, window=window)), Block(LinearAttention())]
        return SequenceModel(VOCAB, 16, layers, positions=positions, max_len=16)

    assert symbolic_hash(model(16)) == symbolic_hash(model(32)) == symbolic_hash(model(None))
    assert symbolic_hash(model(8)) != symbolic_hash(model(None))
    assert symbolic_hash(model(32, "none")) != symbolic_hash(model(None, "none"))
    tokens = torch.randint(0, VOCAB, (2, 16))
    torch.manual_seed(0)
    windowed = model(32).build()
    full = model(None).build()
    full.load_state_dict(windowed.state_dict())
    torch.testing.assert_close(windowed(tokens), full(tokens))
