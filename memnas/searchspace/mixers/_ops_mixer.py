"""Shared parts of the mixers built on `memnas.ops`: short convolution, op dispatch, state size.

A mixer over an op (Mamba, GLA, Gated DeltaNet, ...) is a module whose ``forward``
runs the op's chunked form (or fla's kernel on CUDA, see `memnas.ops.backend`) and
whose ``reference_forward`` runs the op's per-token reference, with the same
projections around both, so the two compute the same function.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.ops.backend import resolve

# Mamba's initial step sizes: log-uniform in [DT_MIN, DT_MAX], floored at DT_FLOOR; and
# Mamba2's initial per-head decay rates A ~ U(A_INIT_RANGE).
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4
A_INIT_RANGE = (1.0, 16.0)

# The short causal convolution's kernel sizes the papers use: none, or 4
# (Mamba, Mamba2, GLA with short conv, Gated DeltaNet, xLSTM's mLSTM block).
CONV_KERNELS = (0, 4)


def conv_decision() -> Any:
    """The kernel-size decision every recurrent mixer carries: ``pg.oneof([0, 4])``."""
    return pg.oneof(list(CONV_KERNELS))


def check_conv(owner: str, kernel: int) -> None:
    """Raises ValueError naming ``kernel`` unless it is 0 or a positive size."""
    if not isinstance(kernel, int) or kernel < 0:
        raise ValueError(f"{owner}: conv_kernel must be an int >= 0 (0: no conv), got {kernel!r}")


def dt_bias_init(size: int) -> torch.Tensor:
    """Biases whose softplus is a step size drawn log-uniformly from ``[1e-3, 1e-1]``.

    As ``dt_proj.bias`` in mamba_ssm's ``Mamba`` (and ``dt_bias`` in Mamba2 and Gated
    DeltaNet): ``dt = exp(U(log 1e-3, log 1e-1))`` floored at ``1e-4``, and the bias is
    ``softplus^{-1}(dt) = dt + log(1 - exp(-dt))``.
    """
    u = torch.rand(size)
    dt = torch.exp(u * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
    dt = dt.clamp(min=DT_FLOOR)
    return dt + torch.log(-torch.expm1(-dt))


def decay_rate_init(num_heads: int) -> torch.Tensor:
    """Mamba2's initial ``A_log`` per head: ``log A`` with ``A ~ U(1, 16)``."""
    return torch.empty(num_heads).uniform_(*A_INIT_RANGE).log()


class ShortConv(nn.Module):
    """Causal depthwise convolution over time followed by SiLU; kernel 0 is the identity.

    ``(B, T, C) -> (B, T, C)``: output ``t`` sees inputs ``t-k+1 .. t``, as the
    short convolutions of Mamba (``d_conv=4``) and fla's ``ShortConvolution``. At
    inference it keeps the last ``k - 1`` inputs per channel (see `state_numbers`).
    """

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = (
            nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1)
            if kernel > 0
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            return x
        t = x.shape[1]
        return F.silu(self.conv(x.transpose(1, 2))[..., :t].transpose(1, 2))

    @staticmethod
    def state_numbers(channels: int, kernel: int) -> int:
        """Numbers cached per sequence at inference: the last ``kernel - 1`` inputs."""
        return channels * max(0, kernel - 1)


class OpMixerModule(nn.Module):
    """Base of the op-backed mixer modules.

    Subclasses implement ``mix(x, op)`` with ``op`` the function to call (the
    chunked form, fla's kernel, or the per-token reference, all with one
    signature) and set `op_name`. ``chunk_size`` (speed only) goes to the torch
    form; tests set it small to cross chunk boundaries. ``backend`` (``"auto"``, ``"torch"``, ``"fla"``;
    None: ``MEMNAS_OPS_BACKEND``) picks who runs ``forward``; it never changes the
    function, so it is not part of the symbolic spec.
    """

    op_name: str = ""

    def __init__(self, chunk_size: int = 64) -> None:
        super().__init__()
        self.backend: str | None = None
        self.chunk_size = chunk_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The chunked/parallel form (or fla's kernel on CUDA)."""
        op = resolve(self.op_name, self.backend, x.is_cuda)
        if op.__module__.startswith("memnas.ops"):  # fla's kernels pick their own chunks
            op = functools.partial(op, chunk_size=self.chunk_size)
        return self.mix(x, op)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with the op's per-token reference (slow; tests, benchmarks)."""
        ops = importlib.import_module("memnas.ops")
        return self.mix(x, getattr(ops, f"{self.op_name}_reference"))

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
