"""Shared machinery of the recurrent mixers: head projections, chunking, log-space decays."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._heads import merge_heads, split_heads


class RecurrentHeads(nn.Module):
    """Base of the recurrent mixer modules: projections in and out of heads.

    ``project`` maps ``(B, T, D)`` to per-head queries, keys and values
    ``(B, H, T, D/H)`` with L2-normalised queries and keys (as DeltaNet and Titans
    do); ``finish`` RMS-normalises each head's output (the output normalisation of
    DeltaNet and Titans, without a gain: the output projection has one), merges
    the heads and projects back to ``D``.

    Subclasses implement ``forward`` (the parallel/chunked form) and
    ``reference_forward`` (a naive per-token loop computing the same function).
    """

    def __init__(self, d_model: int, num_heads: int, chunk_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) -> q, k, v of shape (B, H, T, D/H); q and k have unit L2 norm."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return F.normalize(q, dim=-1), F.normalize(k, dim=-1), v

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, T, D/H) -> (B, T, D): per-head RMS norm, merge, output projection."""
        y = F.rms_norm(y, y.shape[-1:], eps=1e-6)
        return self.out(merge_heads(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def head_gate(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Applies a ``D -> H`` linear layer and returns its pre-activations as (B, H, T)."""
    return linear(x).transpose(1, 2)


def gate_linear(d_model: int, num_heads: int, bias: float) -> nn.Linear:
    """A ``D -> H`` linear layer (one gate per head) whose bias starts at ``bias``."""
    layer = nn.Linear(d_model, num_heads)
    nn.init.constant_(layer.bias, bias)
    return layer


def to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(B, H, T, *rest) -> (B, H, N, C, *rest), zero-padding T up to N * C.

    Padding goes at the end of the sequence, so (in a causal computation) it can
    only change outputs at padded positions, which `from_chunks` drops.
    """
    b, h, t = x.shape[:3]
    n = math.ceil(t / chunk_size)
    pad = n * chunk_size - t
    if pad:
        x = torch.cat([x, x.new_zeros((b, h, pad) + x.shape[3:])], dim=2)
    return x.reshape((b, h, n, chunk_size) + x.shape[3:])


def from_chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, H, N, C, *rest) -> (B, H, length, *rest), dropping padded positions."""
    b, h, n, c = x.shape[:4]
    return x.reshape((b, h, n * c) + x.shape[4:])[:, :, :length]


def decay_matrix(log_cum: torch.Tensor) -> torch.Tensor:
    """Pairwise decay products inside each chunk, computed in log space.

    Args:
      log_cum: (..., C) inclusive cumulative sums of log decays ``L_t = sum_{j<=t} log a_j``.

    Returns:
      (..., C, C) with entry ``[t, s] = prod_{s<j<=t} a_j = exp(L_t - L_s)`` for
      ``s <= t`` and 0 above the diagonal. The masked entries are set to ``-inf``
      before ``exp``, so nothing overflows and no NaN reaches the gradients.
    """
    diff = log_cum[..., :, None] - log_cum[..., None, :]
    causal = causal_mask(log_cum.shape[-1], log_cum.device)
    return diff.masked_fill(~causal, float("-inf")).exp()


def causal_mask(c: int, device: torch.device, diagonal: int = 0) -> torch.Tensor:
    """A (c, c) boolean lower-triangular mask (``diagonal=-1``: strictly lower)."""
    return torch.ones(c, c, dtype=torch.bool, device=device).tril(diagonal)


def broadcast_to(gate: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Appends singleton dims to ``gate`` (B, H) so it broadcasts against ``like``."""
    return gate.reshape(gate.shape + (1,) * (like.dim() - gate.dim()))
