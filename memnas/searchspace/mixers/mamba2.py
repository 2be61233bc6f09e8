"""Mamba2 (Dao & Gu, 2024): the scalar-decay state space model SSD as a sequence mixer."""

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
from memnas.searchspace.mixers.mamba import check_positive

NORM_EPS = 1e-5
# Tokens per chunk of the chunked SSD (speed only; measured fastest at T=512 on the CPU).
CHUNK_SIZE = 32


@register_mixer
class Mamba2(Mixer):
    """Causal Mamba2 block: a selective state space model with one scalar decay per head.

    Source: Dao, Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms
    Through Structured State Space Duality", ICML 2024 (https://arxiv.org/abs/2405.21060),
    layer layout of mamba_ssm's ``Mamba2`` (one B/C group). One projection gives the gate
    ``z`` and ``x`` (``d_inner = expand * d_model`` each), ``B, C`` (``d_state`` each) and
    ``dt`` (one per head); ``x, B, C`` pass a short causal depthwise convolution and SiLU
    (``conv_kernel=0``: SiLU alone). Per head, with ``x_t`` of ``d_inner / num_heads``
    dimensions and ``dt_t = softplus(dt_t + b_dt)``, ``A = -exp(A_log) < 0`` (SSD)::

        H_t = exp(dt_t A) H_{t-1} + dt_t x_t B_t^T,   y_t = H_t C_t + D x_t

    then ``W_out RMSNorm(y_t * silu(z_t))`` (the gated norm over all ``d_inner``).

    ``forward`` runs `memnas.ops.ssd` (the chunked state-space-duality form),
    ``reference_forward`` `memnas.ops.ssd_reference` token by token.

    Attributes:
      num_heads: Number of heads; must divide ``d_inner`` (head dim ``d_inner / num_heads``).
      d_state: State size ``N`` per head dimension, 8, 16 or 32.
      expand: Inner width over ``d_model``, 1 or 2 (the paper's).
      conv_kernel: Short convolution size on ``x, B, C`` (0: none; the paper's is 4).
    """

    num_heads: int = 2
    d_state: int = 16
    expand: int = 2
    conv_kernel: int = 4

    def check(self, d_model: int) -> None:
        """Raises ValueError naming a bad ``num_heads``, ``d_state``, ``expand`` or kernel."""
        check_positive("Mamba2", d_model=d_model, num_heads=self.num_heads,
                       d_state=self.d_state, expand=self.expand)
        if (self.expand * d_model) % self.num_heads:
            raise ValueError(
                f"Mamba2: num_heads must divide d_inner = expand * d_model, got "
                f"num_heads={self.num_heads}, expand={self.expand}, d_model={d_model}"
            )
        check_conv("Mamba2", self.conv_kernel)

    def build(self, d_model: int) -> nn.Module:
        """Returns a `Mamba2Module` of width ``d_model``."""
        self.check(d_model)
        return Mamba2Module(d_model, self.num_heads, self.d_state, self.expand, self.conv_kernel)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """``d_inner * d_state`` (``H`` states of ``P x N``) plus the conv's last inputs.

        The convolution caches ``conv_kernel - 1`` steps of ``x, B, C``
        (``d_inner + 2 d_state`` channels); independent of ``max_len``.
        """
        self.check(d_model)
        d_inner = self.expand * d_model
        conv = ShortConv.state_numbers(d_inner + 2 * self.d_state, self.conv_kernel)
        return d_inner * self.d_state + conv

    def summary(self) -> str:
        """E.g. ``"mamba2(h=2,n16,e2,c4)"``."""
        return f"mamba2(h={self.num_heads},n{self.d_state},e{self.expand},c{self.conv_kernel})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; state in {8, 16, 32}; expand in {1, 2}; conv in {0, 4}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]),
            d_state=pg.oneof([8, 16, 32]),
            expand=pg.oneof([1, 2]),
            conv_kernel=conv_decision(),
        )

    @classmethod
    def bench_config(cls) -> "Mamba2":
        """The configuration `memnas bench mixers` times.

        Head dim 64 as the paper's (2 heads at ``d_model=64``, expand 2), conv 4, and
        the space's largest state, 32 (the paper's is 64 to 128).
        """
        return cls(num_heads=2, d_state=32, expand=2, conv_kernel=4)


class Mamba2Module(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal Mamba2 block (see `Mamba2`)."""

    op_name = "ssd"

    def __init__(
        self, d_model: int, num_heads: int, d_state: int, expand: int, conv_kernel: int,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size)
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.num_heads = d_inner, d_state, num_heads
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + num_heads, bias=False)
        self.conv = ShortConv(d_inner + 2 * d_state, conv_kernel)
        self.dt_bias = nn.Parameter(dt_bias_init(num_heads))
        self.A_log = nn.Parameter(decay_rate_init(num_heads))
        self.D = nn.Parameter(torch.ones(num_heads))
        self.norm_weight = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _project(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        b, t, _ = x.shape
        di, n, h = self.d_inner, self.d_state, self.num_heads
        z, xbc, dt = self.in_proj(x).split([di, di + 2 * n, h], dim=-1)
        xbc = self.conv(xbc) if self.conv.kernel else F.silu(xbc)
        xs, bm, cm = xbc.split([di, n, n], dim=-1)
        args = {
            "x": xs.reshape(b, t, h, di // h), "dt": F.softplus(dt + self.dt_bias),
            "A": -self.A_log.exp(), "B": bm, "C": cm, "D": self.D,
        }
        return args, z

    def op_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The op's keyword arguments ``x [B, T, H, P], dt [B, T, H], A [H], B, C [B, T, N], D``."""
        return self._project(x)[0]

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections around ``op`` (`memnas.ops.ssd` or its reference)."""
        args, z = self._project(x)
        y, _ = op(**args)
        y = y.reshape(z.shape) * F.silu(z)
        return self.out_proj(F.rms_norm(y, (self.d_inner,), self.norm_weight, eps=NORM_EPS))
