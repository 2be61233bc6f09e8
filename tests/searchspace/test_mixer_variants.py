"""Tests of sliding-window attention, learned-beta Hopfield and linear attention's two forms."""

from __future__ import annotations

import math

import pyglove as pg
import pytest
import torch

from memnas.searchspace import HopfieldLayer, LinearAttention, SoftmaxAttention
from memnas.searchspace.mixers.linear_attention import (
    FEATURE_MAPS,
    chunked_linear_attention,
    recurrent_linear_attention,
)
from memnas.searchspace.mixers.softmax_attention import causal_band_mask

D_MODEL = 16



def _naive_attention(module: torch.nn.Module, x: torch.Tensor, window: int | None) -> torch.Tensor:
    b, t, d = x.shape
    h = module.num_heads
    q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in module.qkv(x).chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    allowed = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        for j in range(t):
            allowed[i, j] = j <= i and (window is None or i - j < window)
    y = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v
    return module.out(y.transpose(1, 2).reshape(b, t, d))


@pytest.mark.parametrize("window", [None, 1, 3, 8, 40])
def test_sliding_window_attention_matches_naive_masked_softmax(window: int | None) -> None:
    torch.manual_seed(0)
    module = SoftmaxAttention(num_heads=2, window=window).build(D_MODEL).double()
    x = torch.randn(2, 20, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(module(x), _naive_attention(module, x, window))


def test_sliding_window_is_causal_and_local() -> None:
    torch.manual_seed(0)
    module = SoftmaxAttention(num_heads=2, window=4).build(D_MODEL)
    x = torch.randn(1, 16, D_MODEL)
    x2 = x.clone()
    x2[:, 8] += 1.0  # seen by positions 8..11 only
    y, y2 = module(x), module(x2)
    torch.testing.assert_close(y2[:, :8], y[:, :8])
    torch.testing.assert_close(y2[:, 12:], y[:, 12:])
    assert not torch.allclose(y2[:, 8:12], y[:, 8:12])
    assert causal_band_mask(4, 2).tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [False, True, True, False],
        [False, False, True, True],
    ]


def test_sliding_window_spec() -> None:
    assert SoftmaxAttention(2).summary() == "attn(h=2)"
    assert SoftmaxAttention(2, window=8).summary() == "attn(h=2,w=8)"
    windows = {c.window for c in pg.iter(SoftmaxAttention.space())}
    assert None in windows and len(windows) > 1
    with pytest.raises(ValueError, match="window must be None or >= 1, got 0"):
        SoftmaxAttention(window=0).build(D_MODEL)


def test_learned_beta_is_a_parameter_with_gradient() -> None:
    torch.manual_seed(0)
    module = HopfieldLayer(num_heads=2, beta="learned").build(D_MODEL)
    assert isinstance(module.beta, torch.nn.Parameter)
    assert any(p is module.beta for p in module.parameters())
    torch.testing.assert_close(module.beta.detach(), torch.full((2,), (D_MODEL // 2) ** -0.5))
    module(torch.randn(2, 10, D_MODEL)).square().sum().backward()
    assert module.beta.grad is not None and (module.beta.grad != 0).all()
    fixed = HopfieldLayer(num_heads=2, beta=1 / math.sqrt(D_MODEL // 2)).build(D_MODEL)
    fixed.load_state_dict({k: v for k, v in module.state_dict().items() if k != "beta"})
    x = torch.randn(2, 10, D_MODEL)
    torch.testing.assert_close(module(x), fixed(x))  # at init: the same function
    assert HopfieldLayer(2, "learned").summary() == "hopfield(h=2,b=learned)"
    assert "learned" in {c.beta for c in pg.iter(HopfieldLayer.space())}
    with pytest.raises(ValueError, match="'sharp'"):
        HopfieldLayer(beta="sharp").build(D_MODEL)


@pytest.mark.parametrize("feature_map", sorted(FEATURE_MAPS))
@pytest.mark.parametrize("num_heads", [1, 4])
def test_linear_attention_chunked_matches_reference_loop(feature_map: str, num_heads: int) -> None:
    torch.manual_seed(0)
    module = LinearAttention(num_heads=num_heads, feature_map=feature_map).build(D_MODEL).double()
    x = torch.randn(2, 100, D_MODEL, dtype=torch.float64)  # not a multiple of the chunk (64)
    torch.testing.assert_close(module(x), module.reference_forward(x), rtol=0, atol=1e-5)


def test_chunked_kernel_against_masked_quadratic_form() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 5, dtype=torch.float64) for _ in range(3))
    full = (q @ k.transpose(-1, -2)).tril() @ v
    for chunk in (1, 4, 16, 37, 64):
        torch.testing.assert_close(chunked_linear_attention(q, k, v, chunk), full)
    torch.testing.assert_close(recurrent_linear_attention(q, k, v), full)


def test_linear_attention_causal_across_chunks_with_gradients() -> None:
    torch.manual_seed(0)
    module = LinearAttention(num_heads=2, feature_map="softmax").build(D_MODEL).double()
    x = torch.randn(2, 90, D_MODEL, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 70:] += 1.0
    torch.testing.assert_close(module(x2)[:, :70], module(x)[:, :70], rtol=0, atol=1e-12)
    assert not torch.allclose(module(x2)[:, 70:], module(x)[:, 70:])
    module(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
