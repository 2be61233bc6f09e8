"""The torch modules that the memory-cell primitives of `cell_ops` build."""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from memnas.ops.backend import resolve
from memnas.searchspace.mixers._heads import merge_heads, split_heads
from memnas.searchspace.mixers._ops_mixer import decay_rate_init, dt_bias_init
from memnas.searchspace.mixers.gla import GATE_LOGIT_NORMALIZER, GATE_LOW_RANK, NORM_EPS
from memnas.searchspace.mixers.linear_attention import FEATURE_MAPS, chunked_linear_attention
from memnas.searchspace.mixers.softmax_attention import causal_band_mask

CHUNK_SIZE = 64


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid, "silu": F.silu}


def product(*xs: torch.Tensor) -> torch.Tensor:
    """The elementwise product of the tensors."""
    return functools.reduce(operator.mul, xs)


class Elementwise(nn.Module):
    """A parameter-free function of the node's arguments."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


class CausalConv(nn.Module):
    """``(B, T, C)``: depthwise convolution over time, output ``t`` from inputs ``<= t``."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


class RMSNorm(nn.Module):
    """RMS normalisation over the last dimension with a learned gain."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, NORM_EPS)


class LinearAttnModule(nn.Module):
    """``(q, k, v)`` each ``(B, T, D)`` -> causal linear attention, as `LinearAttentionModule`."""

    def __init__(self, num_heads: int, feature_map: str, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads, self.feature_map, self.eps = num_heads, feature_map, eps
        self.chunk_size = CHUNK_SIZE

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        phi, positive = FEATURE_MAPS[self.feature_map]
        q, k, v = (split_heads(z, self.num_heads) for z in (q, k, v))
        q, k = phi(q), phi(k)
        if positive:  # numerator and denominator in one pass: a ones column on v
            y = chunked_linear_attention(q, k, F.pad(v, (0, 1), value=1.0), self.chunk_size)
            y = y[..., :-1] / (y[..., -1:] + self.eps)
        else:
            y = F.layer_norm(chunked_linear_attention(q, k, v, self.chunk_size), v.shape[-1:])
        return merge_heads(y)


class AttentionModule(nn.Module):
    """``(q, k, v)`` each ``(B, T, D)`` -> causal softmax attention (full or windowed)."""

    def __init__(self, num_heads: int, window: int | None) -> None:
        super().__init__()
        self.num_heads, self.window = num_heads, window

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(z, self.num_heads) for z in (q, k, v))
        t = q.shape[2]
        if self.window is None or self.window >= t:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = causal_band_mask(t, self.window, device=q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return merge_heads(y)


class ScanModule(nn.Module):
    """A node over a `memnas.ops` op: fla's kernel on CUDA when available (``backend``,
    as the mixers' `OpMixerModule`), else the chunked torch form."""

    def __init__(self, d_model: int, num_heads: int, norm: bool) -> None:
        super().__init__()
        self.num_heads, self.backend, self.chunk_size = num_heads, None, CHUNK_SIZE
        self.norm_weight = nn.Parameter(torch.ones(d_model // num_heads)) if norm else None

    def run(self, name: str, x: torch.Tensor, *args: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``name``'s output for per-head inputs, normalised per head, shaped as ``x``
        ``(B, T, D)``."""
        op = resolve(name, self.backend, x.is_cuda)
        if op.__module__.startswith("memnas.ops"):
            kwargs["chunk_size"] = self.chunk_size
        o, _ = op(*args, **kwargs)
        if self.norm_weight is not None:
            o = F.rms_norm(o, self.norm_weight.shape, self.norm_weight, NORM_EPS)
        return o.reshape(x.shape)

    def heads(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, H * d)`` -> ``(B, T, H, d)``, the ops' layout."""
        return [z.reshape(*z.shape[:2], self.num_heads, -1) for z in xs]


class DecayedScanModule(ScanModule):
    """``(gate, q, k, v)`` -> GLA with a rank-16 decay gate from ``gate`` (see `DecayedScan`)."""

    def __init__(self, d_model: int, num_heads: int, norm: bool) -> None:
        super().__init__(d_model, num_heads, norm)
        self.gate_down = nn.Linear(d_model, GATE_LOW_RANK, bias=False)
        self.gate_up = nn.Linear(GATE_LOW_RANK, d_model)
        nn.init.zeros_(self.gate_up.bias)  # decays start near 0.958, as GLA's

    def forward(self, gate: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor) -> torch.Tensor:
        gk = F.logsigmoid(self.gate_up(self.gate_down(gate))) / GATE_LOGIT_NORMALIZER
        return self.run("gla", gate, *self.heads(q, k, v, gk))


class DeltaScanModule(ScanModule):
    """``(gate, q, k, v)`` -> the (gated) delta rule, ``beta`` and decay from ``gate``."""

    def __init__(self, d_model: int, num_heads: int, gated: bool, norm: bool) -> None:
        super().__init__(d_model, num_heads, norm)
        self.gated = gated
        # One projection gives the decay input ``a`` (when gated) and ``beta``'s.
        self.gate = nn.Linear(d_model, (2 if gated else 1) * num_heads, bias=False)
        if gated:  # Mamba2's initialisation, as Gated DeltaNet's
            self.A_log = nn.Parameter(decay_rate_init(num_heads))
            self.dt_bias = nn.Parameter(dt_bias_init(num_heads))

    def forward(self, gate: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(q, k, v)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if not self.gated:
            return self.run("delta_rule", gate, q, k, v, beta=torch.sigmoid(self.gate(gate)))
        a, beta = self.gate(gate).chunk(2, dim=-1)
        g = -self.A_log.exp() * F.softplus(a + self.dt_bias)
        return self.run("gated_delta_rule", gate, q, k, v, g=g, beta=torch.sigmoid(beta))
