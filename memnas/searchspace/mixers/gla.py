"""Gated linear attention (GLA, Yang et al., 2024) as a sequence mixer over `memnas.ops.gla`."""

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

# fla's GatedLinearAttention defaults: the decay gate's low-rank width and the divisor of
# its log-sigmoid (which keeps decays near 1: logsigmoid(0) / 16 gives 0.958 per token).
GATE_LOW_RANK = 16
GATE_LOGIT_NORMALIZER = 16.0
EXPAND_KS = (0.5, 1.0)
NORM_EPS = 1e-5
# Tokens per chunk of the chunked op (speed only; measured fastest at T=512 on the CPU).
CHUNK_SIZE = 64


@register_mixer
class GatedLinearAttention(Mixer):
    """Causal multi-head gated linear attention with per-key-dimension data-dependent decays.

    Source: Yang, Wang, Shen, Panda, Kim, "Gated Linear Attention Transformers with
    Hardware-Efficient Training", ICML 2024 (https://arxiv.org/abs/2312.06635), with
    the layer layout of flash-linear-attention's ``GatedLinearAttention``. Per head::

        S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T,    o_t = S_t^T q_t / sqrt(d_k)

    with ``gk_t = logsigmoid(W_up W_down x_t + b) / 16`` (a rank-16 gate, one log decay
    per key dimension), keys of width ``expand_k * d_model`` and values of width
    ``d_model``; the output is ``W_o (RMSNorm_head(o_t) * swish(W_g x_t))``. With
    ``conv_kernel > 0``, q, k and v each pass a causal depthwise convolution and SiLU.

    Attributes:
      num_heads: Number of heads; must divide ``d_model`` and the key width.
      expand_k: Key width over ``d_model``, 0.5 (the paper's) or 1.
      conv_kernel: Short convolution on q, k, v (0: none).
    """

    num_heads: int = 4
    expand_k: float = 0.5
    conv_kernel: int = 4

    def build(self, d_model: int) -> nn.Module:
        """Returns a `GatedLinearAttentionModule` of width ``d_model``."""
        self.check(d_model)
        return GatedLinearAttentionModule(
            d_model, self.num_heads, self._key_dim(d_model), self.conv_kernel
        )

    def check(self, d_model: int) -> None:
        """Raises ValueError naming a bad ``num_heads``, ``expand_k`` or ``conv_kernel``."""
        super().check(d_model)
        self._key_dim(d_model)
        check_conv("GatedLinearAttention", self.conv_kernel)

    def _key_dim(self, d_model: int) -> int:
        key_dim = self.expand_k * d_model
        if self.expand_k <= 0 or key_dim != int(key_dim) or int(key_dim) % self.num_heads:
            raise ValueError(
                f"GatedLinearAttention: expand_k * d_model must be a positive multiple of "
                f"num_heads, got expand_k={self.expand_k!r}, d_model={d_model}, "
                f"num_heads={self.num_heads}"
            )
        return int(key_dim)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """``H * d_k * d_v`` (= ``key_dim * d_model / H``) plus the conv's last inputs.

        Independent of ``max_len``: the recurrent state has a fixed size.
        """
        self.check(d_model)
        key_dim = self._key_dim(d_model)
        conv = ShortConv.state_numbers(2 * key_dim + d_model, self.conv_kernel)
        return key_dim * d_model // self.num_heads + conv

    def summary(self) -> str:
        """E.g. ``"gla(h=2,k0.5,c4)"``."""
        return f"gla(h={self.num_heads},k{self.expand_k:g},c{self.conv_kernel})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; expand_k in {0.5, 1}; conv kernel in {0, 4}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]),
            expand_k=pg.oneof(list(EXPAND_KS)),
            conv_kernel=conv_decision(),
        )

    @classmethod
    def bench_config(cls) -> "GatedLinearAttention":
        """The configuration `memnas bench mixers` times: the paper's 4 heads, expand_k 0.5."""
        return cls(num_heads=4, expand_k=0.5, conv_kernel=4)


class GatedLinearAttentionModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal gated linear attention (see `GatedLinearAttention`).

    ``in_proj`` gives, in one matmul, ``q | k`` (``key_dim`` each), ``v`` (``D``), the
    output gate (``D``) and the decay gate's low-rank input (`GATE_LOW_RANK`).
    """

    op_name = "gla"

    def __init__(
        self, d_model: int, num_heads: int, key_dim: int, conv_kernel: int,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.d_model = d_model
        self.in_proj = nn.Linear(d_model, 2 * key_dim + 2 * d_model + GATE_LOW_RANK, bias=False)
        self.conv = ShortConv(2 * key_dim + d_model, conv_kernel)
        self.gate_up = nn.Linear(GATE_LOW_RANK, key_dim)
        nn.init.zeros_(self.gate_up.bias)  # decays start near exp(logsigmoid(0) / 16) = 0.958
        self.norm_weight = nn.Parameter(torch.ones(d_model // num_heads))
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _split(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        b, t, _ = x.shape
        h, kd, d = self.num_heads, self.key_dim, self.d_model
        qkv, gate, low = self.in_proj(x).split([2 * kd + d, d, GATE_LOW_RANK], dim=-1)
        q, k, v = self.conv(qkv).split([kd, kd, d], dim=-1)
        gk = F.logsigmoid(self.gate_up(low)) / GATE_LOGIT_NORMALIZER
        heads = tuple(z.reshape(b, t, h, -1) for z in (q, k, v, gk))
        return heads, gate

    def op_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(q, k, v, gk)`` in the op's layout ``[B, T, H, .]`` for input ``x`` (B, T, D)."""
        return self._split(x)[0]

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections, the op, per-head RMSNorm times swish gate, output projection."""
        b, t, _ = x.shape
        inputs, gate = self._split(x)
        o, _ = op(*inputs)
        o = F.rms_norm(o, self.norm_weight.shape, self.norm_weight, NORM_EPS)
        return self.out(o.reshape(b, t, self.d_model) * F.silu(gate))
