"""Gated DeltaNet: the delta rule with a Mamba2-style per-head decay (Yang et al., ICLR 2025)."""

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
    decay_rate_init,
    dt_bias_init,
)



@register_mixer
class GatedDeltaNet(Mixer):
    """Causal multi-head Gated DeltaNet: a delta-rule matrix memory with a gated decay.

    Source: Yang, Kautz, Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with
    Delta Rule", ICLR 2025 (https://arxiv.org/abs/2412.06464). Per head, with
    ``q_t, k_t`` L2-normalised, ``beta_t = sigmoid(w_b . x_t)`` and the log decay
    ``g_t = -exp(A_log) * softplus(w_a . x_t + dt_bias)`` (Mamba2's
    parameterisation, ``alpha_t = exp(g_t)``)::

        S_t = alpha_t S_{t-1} + beta_t (v_t - alpha_t S_{t-1} k_t) k_t^T,   o_t = S_t q_t / sqrt(d)

    ``q, k, v`` come from linear projections, each followed by a short causal
    depthwise convolution and SiLU (``conv_kernel=0``: SiLU alone, as fla's layer
    without short convolutions). The output is gated, ``RMSNorm(o_t) * silu(W_g x_t)``
    per head (fla's ``FusedRMSNormGated``), and projected back to ``d_model``. Keys and
    values have ``d_model / num_heads`` dimensions per head.

    ``forward`` runs `memnas.ops.gated_delta_rule` (chunkwise, fla's kernel on CUDA),
    ``reference_forward`` `memnas.ops.gated_delta_rule_reference` token by token.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      conv_kernel: Short convolution size on the q, k, v paths (0: none).
    """

    num_heads: int = 1
    conv_kernel: int = 4

    def build(self, d_model: int) -> nn.Module:
        """Returns a `GatedDeltaNetModule` of width ``d_model``.

        Raises:
          ValueError: naming ``num_heads`` or ``conv_kernel`` if invalid.
        """
        self.check(d_model)
        check_conv("GatedDeltaNet", self.conv_kernel)
        return GatedDeltaNetModule(d_model, self.num_heads, self.conv_kernel)

    def summary(self) -> str:
        """E.g. ``"gdn(h=2,c4)"``."""
        return f"gdn(h={self.num_heads},c{self.conv_kernel})"

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """``H`` states of ``(d_model/H)^2`` plus the q, k, v convolutions' last inputs.

        ``d_model^2 / H + 3 d_model (conv_kernel - 1)``; independent of ``max_len``.
        """
        self.check(d_model)
        check_conv("GatedDeltaNet", self.conv_kernel)
        d_head = d_model // self.num_heads
        return self.num_heads * d_head * d_head + ShortConv.state_numbers(
            3 * d_model, self.conv_kernel
        )

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; short convolution in {0, 4}."""
        return cls(num_heads=pg.oneof([1, 2, 4]), conv_kernel=conv_decision())

    @classmethod
    def bench_config(cls) -> "GatedDeltaNet":
        """The configuration `memnas bench mixers` times."""
        return cls(num_heads=2, conv_kernel=4)


class GatedDeltaNetModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal multi-head gated delta rule (see `GatedDeltaNet`).

    ``in_proj`` gives, in one matmul, ``q | k | v`` (``3 D``), the output gate (``D``),
    the decay input ``a`` (``H``) and the write strength input ``b`` (``H``).
    """

    op_name = "gated_delta_rule"

    def __init__(self, d_model: int, num_heads: int, conv_kernel: int, chunk_size: int = 64) -> None:
        super().__init__(chunk_size)
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.in_proj = nn.Linear(d_model, 4 * d_model + 2 * num_heads, bias=False)
        self.conv = ShortConv(3 * d_model, conv_kernel)
        # Mamba2's initialisation (as fla's GatedDeltaNet): A ~ U(1, 16), dt log-uniform.
        self.A_log = nn.Parameter(decay_rate_init(num_heads))
        self.dt_bias = nn.Parameter(dt_bias_init(num_heads))
        self.norm_weight = nn.Parameter(torch.ones(self.d_head))
        self.out = nn.Linear(d_model, d_model, bias=False)

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections around ``op`` (`memnas.ops.gated_delta_rule` or its reference)."""
        b, t, _ = x.shape
        h, dh, d = self.num_heads, self.d_head, self.d_model
        qkv, gate, a, beta = self.in_proj(x).split([3 * d, d, h, h], dim=-1)
        qkv = self.conv(qkv) if self.conv.kernel else F.silu(qkv)
        q, k, v = qkv.reshape(b, t, 3, h, dh).unbind(2)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        g = -self.A_log.exp() * F.softplus(a + self.dt_bias)
        o, _ = op(q, k, v, g=g, beta=torch.sigmoid(beta))
        o = F.rms_norm(o, (dh,), self.norm_weight, eps=1e-5) * F.silu(gate.view(b, t, h, dh))
        return self.out(o.reshape(b, t, d))
