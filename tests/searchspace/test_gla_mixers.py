"""Tests of the GLA and Retention mixers: chunked form vs reference, causality, state size."""

from __future__ import annotations

import math
import random

import pyglove as pg
import pytest
import torch

from memnas.ops import gla, simple_gla
from memnas.searchspace import memory_space, registered_mixers
from memnas.searchspace.mixers import Mixer
from memnas.searchspace.mixers.gla import (
    GATE_LOGIT_NORMALIZER,
    GatedLinearAttention,
    GatedLinearAttentionModule,
)
from memnas.searchspace.mixers.retention import Retention, RetentionModule, head_decays, rotate
from mixertools import random_init as _random_init

D_MODEL = 16
GLAS = [
    GatedLinearAttention(num_heads=1, expand_k=0.5, conv_kernel=0),
    GatedLinearAttention(num_heads=2, expand_k=0.5, conv_kernel=4),
    GatedLinearAttention(num_heads=2, expand_k=1.0, conv_kernel=0),
    GatedLinearAttention(num_heads=4, expand_k=1.0, conv_kernel=4),
    GatedLinearAttention(num_heads=4, expand_k=0.5, conv_kernel=0),
]
RETENTIONS = [
    Retention(num_heads=1, conv_kernel=0),
    Retention(num_heads=2, conv_kernel=4),
    Retention(num_heads=2, conv_kernel=0),
    Retention(num_heads=4, conv_kernel=4),
]
ALL = GLAS + RETENTIONS


def _id(spec: Mixer) -> str:
    return spec.summary()


def _op(module: torch.nn.Module):
    return gla if isinstance(module, GatedLinearAttentionModule) else simple_gla


@pytest.mark.parametrize("chunk_size", [4, 5, 64])
@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_chunked_form_matches_reference(spec: Mixer, chunk_size: int) -> None:
    torch.manual_seed(0)
    module = spec.build(D_MODEL).double()
    assert isinstance(module, (GatedLinearAttentionModule, RetentionModule))
    _random_init(module)
    module.chunk_size = chunk_size
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)  # 11: not a multiple of the chunk
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, module.reference_forward(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("spec", GLAS[1::2], ids=_id)
def test_gla_with_decays_past_the_factored_bound_matches_reference(spec: Mixer) -> None:
    # Gate bias -4000: log decays near -250 per token, so the op takes per-pair decays.
    torch.manual_seed(1)
    module = spec.build(D_MODEL).double()
    _random_init(module)
    with torch.no_grad():
        module.gate_up.bias.fill_(-4000.0)
    module.chunk_size = 8
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)
    gk = module.op_inputs(x)[3]
    assert gk.max() < -200
    torch.testing.assert_close(module(x), module.reference_forward(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_causal(spec: Mixer) -> None:
    torch.manual_seed(1)
    module = spec.build(D_MODEL).double()
    _random_init(module, seed=1)
    module.chunk_size = 4
    x = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, D_MODEL, dtype=torch.float64)
    for form in (module, module.reference_forward):
        y, y2 = form(x), form(x2)
        torch.testing.assert_close(y2[:, :6], y[:, :6], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, 6:], y[:, 6:])


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_gradients_reach_every_parameter(spec: Mixer) -> None:
    torch.manual_seed(2)
    module = spec.build(D_MODEL)
    module(torch.randn(2, 9, D_MODEL)).square().sum().backward()
    names = [name for name, _ in module.named_parameters()]
    assert names
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_state_numbers_is_the_op_state_plus_conv_cache(spec: Mixer) -> None:
    torch.manual_seed(3)
    module = spec.build(D_MODEL)
    x = torch.randn(2, 7, D_MODEL)
    _, state = _op(module)(*module.op_inputs(x), output_final_state=True)
    expected = state[0].numel()
    if spec.conv_kernel:
        channels, _, kernel = module.conv.conv.weight.shape
        expected += channels * (kernel - 1)
    else:
        assert module.conv.conv is None
    assert spec.state_numbers(D_MODEL, 128) == expected
    assert spec.state_numbers(D_MODEL, 4096) == expected  # a fixed-size state


def test_state_numbers_formulas() -> None:
    # GLA: H * (key_dim / H) * (d / H) + 3-token cache of q, k, v.
    assert GatedLinearAttention(num_heads=2, expand_k=0.5, conv_kernel=4).state_numbers(64, 9) == (
        2 * 16 * 32 + 3 * (32 + 32 + 64)
    )
    spec = GatedLinearAttention(num_heads=1, expand_k=1.0, conv_kernel=0)
    assert spec.state_numbers(64, 9) == 64 * 64
    # Retention: values are 2 d wide.
    assert Retention(num_heads=4, conv_kernel=0).state_numbers(64, 9) == 4 * 16 * 32
    assert Retention(num_heads=1, conv_kernel=4).state_numbers(64, 9) == 64 * 128 + 3 * 256


def test_gla_decays_start_near_the_papers_range() -> None:
    torch.manual_seed(4)
    module = GatedLinearAttention(num_heads=2).build(D_MODEL)
    gk = module.op_inputs(torch.randn(2, 50, D_MODEL))[3]
    assert gk.shape == (2, 50, 2, D_MODEL // 2 // 2)
    assert (gk < 0).all() and (gk > -1.0 / GATE_LOGIT_NORMALIZER * 5).all()
    mean_decay = gk.exp().mean().item()
    assert 0.9 < mean_decay < 1.0  # logsigmoid(0) / 16: about 0.958 per token


def test_retention_decays_are_fixed_per_head() -> None:
    gammas = head_decays(4)
    torch.testing.assert_close(gammas, torch.tensor([1 - 2**-5, 1 - 2**-6, 1 - 2**-7, 1 - 2**-8],
                                                    dtype=torch.float64))
    module = Retention(num_heads=4).build(D_MODEL)
    g = module.op_inputs(torch.randn(2, 6, D_MODEL))[3]
    assert g.shape == (2, 6, 4)
    torch.testing.assert_close(g, gammas.log().float().expand(2, 6, 4))
    assert "log_decay" not in dict(module.named_parameters())


def test_retention_is_the_parallel_retention_form() -> None:
    # o = (QK^T * D) V with D[t, s] = gamma^(t-s) for s <= t (Sun et al., eq. 5).
    torch.manual_seed(5)
    module = Retention(num_heads=2, conv_kernel=0).build(D_MODEL).double()
    x = torch.randn(1, 9, D_MODEL, dtype=torch.float64)
    q, k, v, _ = module.op_inputs(x)
    o, _ = simple_gla(*module.op_inputs(x), chunk_size=4)
    t = torch.arange(9, dtype=torch.float64)
    gamma = head_decays(2)[:, None, None]
    d = gamma ** (t[:, None] - t[None, :]).clamp(min=0) * torch.ones(9, 9).double().tril()
    att = torch.einsum("bthk,bshk->bhts", q, k) * d * q.shape[-1] ** -0.5
    torch.testing.assert_close(o, torch.einsum("bhts,bshv->bthv", att, v), rtol=0, atol=1e-10)


def test_rotation_makes_scores_depend_on_offsets_only() -> None:
    gen = torch.Generator().manual_seed(6)
    q, k = (torch.randn(1, 5, 2, 7, generator=gen, dtype=torch.float64) for _ in range(2))
    pos = torch.arange(5)
    scores = torch.einsum("bthk,bshk->bhts", rotate(q, pos), rotate(k, pos))
    shifted = torch.einsum("bthk,bshk->bhts", rotate(q, pos + 13), rotate(k, pos + 13))
    torch.testing.assert_close(shifted, scores, rtol=0, atol=1e-10)
    assert not torch.allclose(scores, torch.einsum("bthk,bshk->bhts", q, k))
    torch.testing.assert_close(rotate(q, pos).norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(rotate(q, pos)[..., -1], q[..., -1])  # odd last dim kept


def test_registered_with_small_spaces() -> None:
    mixers = registered_mixers()
    assert mixers["GatedLinearAttention"] is GatedLinearAttention
    assert mixers["Retention"] is Retention
    assert pg.dna_spec(GatedLinearAttention.space()).space_size == 3 * 2 * 2
    assert pg.dna_spec(Retention.space()).space_size == 3 * 2
    for cls in (GatedLinearAttention, Retention):
        space = cls.space()
        assert set(space.sym_getattr("num_heads").candidates) == {1, 2, 4}
        assert set(space.sym_getattr("conv_kernel").candidates) == {0, 4}
        assert "https://arxiv.org/abs/" in cls.__doc__
    assert set(GatedLinearAttention.space().sym_getattr("expand_k").candidates) == {0.5, 1.0}
    assert "Yang" in GatedLinearAttention.__doc__ and "Sun" in Retention.__doc__
    assert GatedLinearAttention.bench_config().summary() == "gla(h=4,k0.5,c4)"
    assert Retention.bench_config().summary() == "retention(h=2,c4)"


@pytest.mark.parametrize(
    "spec, match",
    [
        (GatedLinearAttention(num_heads=3), "num_heads=3"),
        (GatedLinearAttention(num_heads=0), "num_heads=0"),
        (GatedLinearAttention(expand_k=0.3), "expand_k=0.3"),
        (GatedLinearAttention(expand_k=-0.5), "expand_k=-0.5"),
        (GatedLinearAttention(num_heads=4, expand_k=0.125), "expand_k=0.125"),
        (GatedLinearAttention(conv_kernel=-1), "-1"),
        (Retention(num_heads=5), "num_heads=5"),
        (Retention(conv_kernel=-2), "-2"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_values_are_named(spec: Mixer, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spec.build(D_MODEL)
    with pytest.raises(ValueError, match=match):
        spec.state_numbers(D_MODEL, 10)


@pytest.mark.parametrize("cls", [GatedLinearAttention, Retention])
def test_in_memory_space_samples_build_train_step(cls: type) -> None:
    space = memory_space(vocab_size=11, max_layers=2, d_model=(16, 32), mixers=[cls], max_len=20)
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    tokens = torch.randint(0, 11, (2, 20))
    for _ in range(3):
        candidate = pg.materialize(space, pg.random_dna(spec, rng))
        assert all(isinstance(b.mixer, cls) for b in candidate.layers)
        model = candidate.build()
        logits = model(tokens)
        assert logits.shape == (2, 20, 11) and torch.isfinite(logits).all()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens.reshape(-1))
        assert math.isfinite(loss.item())
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())


def test_retention_norm_is_a_group_norm_over_heads() -> None:
    torch.manual_seed(7)
    module = Retention(num_heads=4, conv_kernel=0).build(D_MODEL).double()
    _random_init(module, seed=7)
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    o, _ = simple_gla(*module.op_inputs(x))
    gn = torch.nn.GroupNorm(4, module.value_dim, eps=1e-5).double()
    with torch.no_grad():
        gn.weight.copy_(module.norm_weight)
        gn.bias.copy_(module.norm_bias)
    gate = module.in_proj(x)[..., -module.value_dim:]
    expected = module.out(torch.nn.functional.silu(gate) * gn(o.reshape(10, -1)).view(2, 5, -1))
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)
