"""RetNet's multi-scale retention (Sun et al., 2023) over `memnas.ops.simple_gla`."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._ops_mixer import (
    OpMixerModule,
    ShortConv,
    check_conv,
    conv_decision,
)

# RetNet's value (and gate) width over d_model: W_V, W_G in R^{d x 2d}, W_O in R^{2d x d}.
EXPAND_V = 2
NORM_EPS = 1e-5
ROTARY_BASE = 10000.0
# Tokens per chunk of the chunked op (speed only).
CHUNK_SIZE = 64


def head_decays(num_heads: int) -> torch.Tensor:
    """RetNet's fixed per-head decays ``gamma_h = 1 - 2^(-5 - h)``, ``h = 0..H-1`` (float64)."""
    return 1.0 - 2.0 ** (-5.0 - torch.arange(num_heads, dtype=torch.float64))


@register_mixer
class Retention(Mixer):
    """Causal multi-scale retention: linear attention with a fixed decay per head.

    Source: Sun, Dong, Huang, Ma, Xia, Xue, Wang, Wei, "Retentive Network: A Successor
    to Transformer for Large Language Models", 2023 (https://arxiv.org/abs/2307.08621).
    Per head ``h``, with rotated queries and keys (the paper's ``Theta``, as RoPE)::

        S_t = gamma_h S_{t-1} + k_t v_t^T,    o_t = S_t^T q_t / sqrt(d_k),    gamma_h = 1 - 2^(-5-h)

    i.e. simple GLA with a constant log decay ``log(gamma_h)``. Keys are ``d_model``
    wide, values ``2 d_model`` (the paper's allocation); the output is
    ``W_o (swish(W_g x_t) * GroupNorm_h(o_t))``, the group norm a per-head layer norm.
    With ``conv_kernel > 0``, q, k and v each pass a causal depthwise convolution and
    SiLU first (a short convolution as in fla's layers; not in the paper).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      conv_kernel: Short convolution on q, k, v (0: none).
    """

    num_heads: int = 2
    conv_kernel: int = 4

    def build(self, d_model: int) -> nn.Module:
        """Returns a `RetentionModule` of width ``d_model``."""
        self.check(d_model)
        return RetentionModule(d_model, self.num_heads, self.conv_kernel)

    def check(self, d_model: int) -> None:
        """Raises ValueError naming a bad ``num_heads`` or ``conv_kernel``."""
        super().check(d_model)
        check_conv("Retention", self.conv_kernel)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """``H * d_k * d_v`` (= ``2 d_model^2 / H``) plus the conv's last inputs.

        Independent of ``max_len``: the recurrent state has a fixed size.
        """
        self.check(d_model)
        conv = ShortConv.state_numbers((2 + EXPAND_V) * d_model, self.conv_kernel)
        return d_model * EXPAND_V * d_model // self.num_heads + conv

    def summary(self) -> str:
        """E.g. ``"retention(h=2,c4)"``."""
        return f"retention(h={self.num_heads},c{self.conv_kernel})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; conv kernel in {0, 4}."""
        return cls(num_heads=pg.oneof([1, 2, 4]), conv_kernel=conv_decision())

    @classmethod
    def bench_config(cls) -> "Retention":
        """The configuration `memnas bench mixers` times."""
        return cls(num_heads=2, conv_kernel=4)


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x`` ``[B, T, H, D]`` at ``positions`` ``[T]``.

    Pairs ``(x_i, x_{i + D/2})`` turn by angle ``t * base^(-2i/D)``: RetNet's
    ``Theta_t = e^{i t theta}`` on queries and its conjugate on keys, so that
    ``q_t . k_s`` depends on ``t - s`` only. An odd last dimension is left as is.
    """
    half = x.shape[-1] // 2
    if half == 0:
        return x
    freq = ROTARY_BASE ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    angle = (positions.to(torch.float64)[:, None] * freq).to(x.dtype)  # [T, half]
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # [T, 1, half]
    a, b, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos, rest], dim=-1)


class RetentionModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal multi-scale retention (see `Retention`).

    ``in_proj`` gives, in one matmul, ``q | k`` (``D`` each), ``v`` and the output gate
    (``EXPAND_V * D`` each).
    """

    op_name = "simple_gla"

    def __init__(
        self, d_model: int, num_heads: int, conv_kernel: int, chunk_size: int = CHUNK_SIZE
    ) -> None:
        super().__init__(chunk_size)
        self.num_heads = num_heads
        self.d_model = d_model
        self.value_dim = EXPAND_V * d_model
        self.in_proj = nn.Linear(d_model, 2 * d_model + 2 * self.value_dim, bias=False)
        self.conv = ShortConv(2 * d_model + self.value_dim, conv_kernel)
        # GroupNorm(H, value_dim): a layer norm per head, then a per-channel affine map.
        self.norm_weight = nn.Parameter(torch.ones(self.value_dim))
        self.norm_bias = nn.Parameter(torch.zeros(self.value_dim))
        self.out = nn.Linear(self.value_dim, d_model, bias=False)
        self.register_buffer("log_decay", head_decays(num_heads).log(), persistent=False)

    def _split(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        b, t, _ = x.shape
        h, d, dv = self.num_heads, self.d_model, self.value_dim
        qkv, gate = self.in_proj(x).split([2 * d + dv, dv], dim=-1)
        q, k, v = self.conv(qkv).split([d, d, dv], dim=-1)
        positions = torch.arange(t, device=x.device)
        q = rotate(q.reshape(b, t, h, -1), positions)
        k = rotate(k.reshape(b, t, h, -1), positions)
        g = self.log_decay.to(x.dtype).expand(b, t, h)
        return (q, k, v.reshape(b, t, h, -1), g), gate

    def op_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(q, k, v, g)`` in the op's layout (``g`` ``[B, T, H]``) for ``x`` (B, T, D)."""
        return self._split(x)[0]

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections, the op, per-head group norm times swish gate, output projection."""
        b, t, _ = x.shape
        inputs, gate = self._split(x)
        o, _ = op(*inputs)
        o = F.layer_norm(o, o.shape[-1:], eps=NORM_EPS).reshape(b, t, self.value_dim)
        o = torch.addcmul(self.norm_bias, o, self.norm_weight)
        return self.out(F.silu(gate) * o)
