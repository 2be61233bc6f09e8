"""Tests of the sequence mixers: causality, shapes, exact equivalences, the registry."""

from __future__ import annotations

import math

import pyglove as pg
import pytest
import torch
import torch.nn.functional as F

from memnas.searchspace import (
    HopfieldLayer,
    LinearAttention,
    Mixer,
    SoftmaxAttention,
    get_mixer,
    memory_space,
    register_mixer,
    registered_mixers,
)
from memnas.searchspace.mixers import _base

D_MODEL = 16


def _all_mixer_configs() -> list[Mixer]:
    return [m for cls in registered_mixers().values() for m in pg.iter(cls.space())]


@pytest.mark.parametrize("mixer", _all_mixer_configs(), ids=lambda m: m.summary())
def test_mixer_is_causal_and_keeps_shape(mixer: Mixer) -> None:
    torch.manual_seed(0)
    module = mixer.build(D_MODEL)
    x = torch.randn(2, 12, D_MODEL)
    y = module(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    cut = 5
    x2 = x.clone()
    x2[:, cut:] = torch.randn(2, 12 - cut, D_MODEL) * 3.0
    y2 = module(x2)
    torch.testing.assert_close(y2[:, :cut], y[:, :cut], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(y2[:, cut:], y[:, cut:])


def test_shipped_mixers_are_registered() -> None:
    assert {"SoftmaxAttention", "LinearAttention", "HopfieldLayer"} <= set(registered_mixers())
    assert get_mixer("HopfieldLayer") is HopfieldLayer
    with pytest.raises(KeyError, match="nope"):
        get_mixer("nope")


def test_mixer_docstrings_name_their_paper() -> None:
    assert "Vaswani" in SoftmaxAttention.__doc__
    assert "Katharopoulos" in LinearAttention.__doc__
    assert "Ramsauer" in HopfieldLayer.__doc__


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_hopfield_at_inverse_sqrt_dhead_is_softmax_attention(num_heads: int) -> None:
    torch.manual_seed(0)
    d_head = D_MODEL // num_heads
    hopfield = HopfieldLayer(num_heads=num_heads, beta=1 / math.sqrt(d_head)).build(D_MODEL)
    attention = SoftmaxAttention(num_heads=num_heads).build(D_MODEL)
    w_q, w_k = hopfield.query.weight, hopfield.key.weight  # (out, in)
    # Attention's value projection equal to Hopfield's W_K followed by its per-head W_V.
    w_v = torch.cat(
        [hopfield.value[h].T @ w_k[h * d_head : (h + 1) * d_head] for h in range(num_heads)]
    )
    with torch.no_grad():
        attention.qkv.weight.copy_(torch.cat([w_q, w_k, w_v]))
        attention.out.weight.copy_(hopfield.out.weight)
    x = torch.randn(3, 10, D_MODEL)
    torch.testing.assert_close(hopfield(x), attention(x), rtol=1e-5, atol=1e-5)
    hopfield.beta = 4.0
    assert not torch.allclose(hopfield(x), attention(x), atol=1e-3)


@pytest.mark.parametrize("feature_map", ["elu+1", "relu"])
def test_linear_attention_matches_recurrent_form(feature_map: str) -> None:
    torch.manual_seed(0)
    module = LinearAttention(num_heads=2, feature_map=feature_map).build(D_MODEL)
    x = torch.randn(2, 9, D_MODEL)
    phi = {"elu+1": lambda t: F.elu(t) + 1, "relu": F.relu}[feature_map]
    q, k, v = module.qkv(x).chunk(3, dim=-1)
    q, k = phi(q), phi(k)
    dh = D_MODEL // 2
    outs = []
    for h in range(2):
        sl = slice(h * dh, (h + 1) * dh)
        state = torch.zeros(2, dh, dh)
        norm = torch.zeros(2, dh)
        ys = []
        for t in range(x.shape[1]):
            state = state + k[:, t, sl, None] * v[:, t, None, sl]
            norm = norm + k[:, t, sl]
            num = torch.einsum("bd,bde->be", q[:, t, sl], state)
            den = (q[:, t, sl] * norm).sum(-1, keepdim=True) + module.eps
            ys.append(num / den)
        outs.append(torch.stack(ys, dim=1))
    expected = module.out(torch.cat(outs, dim=-1))
    torch.testing.assert_close(module(x), expected, rtol=1e-4, atol=1e-5)


def test_bad_mixer_values_are_named() -> None:
    with pytest.raises(ValueError, match="num_heads=3"):
        SoftmaxAttention(num_heads=3).build(16)
    with pytest.raises(ValueError, match="'cosine'"):
        LinearAttention(feature_map="cosine").build(16)
    with pytest.raises(ValueError, match="beta"):
        HopfieldLayer(beta=0.0).build(16)


class _Identity(Mixer):
    """A do-nothing mixer, registered only inside a test."""

    def build(self, d_model: int) -> torch.nn.Module:
        return torch.nn.Identity()

    def summary(self) -> str:
        return "id"

    @classmethod
    def space(cls) -> Mixer:
        return cls()


def test_register_mixer_joins_the_default_space() -> None:
    try:
        register_mixer(name="ZZIdentity")(_Identity)
        space = memory_space(vocab_size=8, max_layers=1, d_model=(16,), mlp_ratio=(1,))
        # The mixer decision's candidates (iterating the whole space would build every config).
        mixers = {type(c) for c in space.layers[0].mixer.candidates}
        assert _Identity in mixers and SoftmaxAttention in mixers
        register_mixer(name="ZZIdentity")(_Identity)  # same class again: fine
        with pytest.raises(ValueError, match="ZZIdentity"):
            register_mixer(name="ZZIdentity")(SoftmaxAttention)
    finally:
        _base._REGISTRY.pop("ZZIdentity", None)
    with pytest.raises(TypeError, match="Mixer subclass"):
        register_mixer(int)
