"""Mamba (Gu & Dao, 2023): the selective state space model S6 as a sequence mixer."""

from __future__ import annotations

import math
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
    dt_bias_init,
)

# Time steps per chunk of the chunked scan (speed only; measured at T=512 on the CPU).
CHUNK_SIZE = 64


def check_positive(owner: str, **values: Any) -> None:
    """Raises ValueError naming the first value that is not an int >= 1."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be an int >= 1, got {name}={value!r}")


@register_mixer
class Mamba(Mixer):
    """Causal Mamba block: a selective (input-dependent) diagonal state space model.

    Source: Gu, Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
    2023 (https://arxiv.org/abs/2312.00752), layer layout of mamba_ssm's ``Mamba``. The
    input is projected to ``x`` and a gate ``z`` of width ``d_inner = expand * d_model``;
    ``x`` passes a short causal depthwise convolution and SiLU (``conv_kernel=0``: SiLU
    alone). Per channel ``d`` and state ``n`` (S6)::

        h_t = exp(delta_t A_dn) h_{t-1} + delta_t B_t x_t,   y_t = C_t . h_t + D_d x_t

    with ``delta_t = softplus(W_dt (W_x x_t)[:r] + b_dt)`` (rank ``r = ceil(d_model/16)``),
    ``B_t, C_t`` read from ``W_x x_t`` too, and ``A = -exp(A_log)`` started at the S4D-real
    values ``A_dn = -(n + 1)``; the output is ``W_out (y_t * silu(z_t))``.

    ``forward`` runs `memnas.ops.selective_scan` (chunked parallel scans),
    ``reference_forward`` `memnas.ops.selective_scan_reference` step by step.

    Attributes:
      d_state: State size per channel (``N``), 4, 8 or 16 (the paper's).
      expand: Inner width over ``d_model``, 1 or 2 (the paper's).
      conv_kernel: Short convolution size on ``x`` (0: none; the paper's is 4).
    """

    d_state: int = 16
    expand: int = 2
    conv_kernel: int = 4

    def check(self, d_model: int) -> None:
        """Raises ValueError naming a bad ``d_state``, ``expand`` or ``conv_kernel``."""
        check_positive("Mamba", d_model=d_model, d_state=self.d_state, expand=self.expand)
        check_conv("Mamba", self.conv_kernel)

    def build(self, d_model: int) -> nn.Module:
        """Returns a `MambaModule` of width ``d_model``."""
        self.check(d_model)
        return MambaModule(d_model, self.d_state, self.expand, self.conv_kernel)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """``d_inner * d_state`` plus the conv's last ``conv_kernel - 1`` inputs of ``x``.

        ``d_inner = expand * d_model``; independent of ``max_len`` (a fixed-size state).
        """
        self.check(d_model)
        d_inner = self.expand * d_model
        return d_inner * self.d_state + ShortConv.state_numbers(d_inner, self.conv_kernel)

    def summary(self) -> str:
        """E.g. ``"mamba(n16,e2,c4)"``."""
        return f"mamba(n{self.d_state},e{self.expand},c{self.conv_kernel})"

    @classmethod
    def space(cls) -> Any:
        """State size in {4, 8, 16}; expand in {1, 2}; conv kernel in {0, 4}."""
        return cls(
            d_state=pg.oneof([4, 8, 16]),
            expand=pg.oneof([1, 2]),
            conv_kernel=conv_decision(),
        )

    @classmethod
    def bench_config(cls) -> "Mamba":
        """The configuration `memnas bench mixers` times: the paper's N=16, expand 2, conv 4."""
        return cls(d_state=16, expand=2, conv_kernel=4)


class MambaModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal Mamba block (see `Mamba`)."""

    op_name = "selective_scan"

    def __init__(
        self, d_model: int, d_state: int, expand: int, conv_kernel: int,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size)
        d_inner = expand * d_model
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = ShortConv(d_inner, conv_kernel)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        with torch.no_grad():
            bound = self.dt_rank**-0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            self.dt_proj.bias.copy_(dt_bias_init(d_inner))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(a.log())  # S4D-real: A = -(n + 1)
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def op_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor | bool]:
        """The op's keyword arguments for input ``x`` (B, T, D), in its ``[B, dim, T]`` layout.

        ``u, delta, A, B, C, D, z, delta_bias, delta_softplus``; the tensors are
        transposed views of the projections (time is contiguous per channel row).
        """
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = self.conv(xs) if self.conv.kernel else F.silu(xs)
        dt, b, c = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # its bias goes in as delta_bias
        return {
            "u": xs.transpose(1, 2), "delta": delta.transpose(1, 2), "A": -self.A_log.exp(),
            "B": b.transpose(1, 2), "C": c.transpose(1, 2), "D": self.D, "z": z.transpose(1, 2),
            "delta_bias": self.dt_proj.bias, "delta_softplus": True,
        }

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections around ``op`` (`memnas.ops.selective_scan` or its reference)."""
        y, _ = op(**self.op_inputs(x))
        return self.out_proj(y.transpose(1, 2))
