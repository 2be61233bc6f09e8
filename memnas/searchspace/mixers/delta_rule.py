"""DeltaNet: the delta rule as a sequence mixer (Schlag et al., 2021; Yang et al., 2024)."""

from __future__ import annotations

from typing import Any

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._recurrent import (
    RecurrentHeads,
    from_chunks,
    gate_linear,
    head_gate,
    to_chunks,
)


@register_mixer
class DeltaNet(Mixer):
    """Causal multi-head DeltaNet: a fast-weight matrix memory written by the delta rule.

    Sources: Schlag, Irie, Schmidhuber, "Linear Transformers Are Secretly Fast Weight
    Programmers", ICML 2021 (https://arxiv.org/abs/2102.11174); Yang, Wang, Zhang,
    Shen, Kim, "Parallelizing Linear Transformers with the Delta Rule over Sequence
    Length", NeurIPS 2024 (https://arxiv.org/abs/2406.06484). Per head, with
    L2-normalised ``q_t, k_t`` and ``beta_t = sigmoid(w_beta . x_t + b)``::

        S_t = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T,    o_t = S_t q_t

    (``S_0 = 0``), then a per-head RMS norm and an output projection.

    Training form: Yang et al.'s chunkwise algorithm. Inside a chunk the
    pseudo-values ``U = T (V - K S_0)`` come from the UT transform
    ``T = (I + tril(diag(beta) K K^T, -1))^{-1} diag(beta)`` (one batched
    triangular solve for all chunks at once, i.e. the WY representation), then
    ``O = Q S_0 + tril(Q K^T) U`` and ``S_C = S_0 + K^T U``: matmuls inside chunks,
    a loop over chunks only. This is exact: the chunk size changes the speed, not
    the function. ``reference_forward`` runs the recurrence token by token.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      chunk_size: Tokens per chunk of the chunkwise algorithm (speed only).
    """

    num_heads: int = 1
    chunk_size: int = 64

    def build(self, d_model: int) -> nn.Module:
        """Returns a `DeltaNetModule` of width ``d_model``."""
        self.check(d_model)
        if self.chunk_size < 1:
            raise ValueError(f"DeltaNet: chunk_size must be >= 1, got {self.chunk_size!r}")
        return DeltaNetModule(d_model, self.num_heads, self.chunk_size)

    def summary(self) -> str:
        """E.g. ``"delta(h=2)"``."""
        return f"delta(h={self.num_heads})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; the chunk size is fixed (it does not change the function)."""
        return cls(num_heads=pg.oneof([1, 2, 4]))


class DeltaNetModule(RecurrentHeads):
    """(B, T, D) -> (B, T, D) causal multi-head delta-rule memory (see `DeltaNet`)."""

    def __init__(self, d_model: int, num_heads: int, chunk_size: int = 64) -> None:
        super().__init__(d_model, num_heads, chunk_size)
        self.beta = gate_linear(d_model, num_heads, bias=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Chunkwise-parallel form (UT transform inside chunks, loop over chunks)."""
        q, k, v = self.project(x)
        b, h, t, dh = q.shape
        beta = torch.sigmoid(head_gate(self.beta, x))
        c = self.chunk_size
        qc, kc, vc, bc = (to_chunks(z, c) for z in (q, k, v, beta))
        # I + tril(diag(beta) K K^T, -1): with unitriangular=True the solver reads only
        # the strictly lower triangle (forward and backward), so no mask is needed.
        lower = bc[..., None] * (kc @ kc.transpose(-1, -2))
        rhs = bc[..., None] * torch.cat([kc, vc], dim=-1)
        wu = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        w, u = wu.split(dh, dim=-1)  # W = T K, U' = T V
        attn = (qc @ kc.transpose(-1, -2)).tril()
        state = x.new_zeros(b, h, dh, dh)  # (d_k, d_v): o = q S in row form
        outs = []
        # Per-chunk views via unbind: one backward node per tensor instead of one per chunk.
        for qn, kn, wn, un, an in zip(*(z.unbind(2) for z in (qc, kc, w, u, attn))):
            pseudo = un - wn @ state
            outs.append(qn @ state + an @ pseudo)
            state = state + kn.transpose(-1, -2) @ pseudo
        return self.finish(from_chunks(torch.stack(outs, dim=2), t))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The recurrence, one token at a time."""
        q, k, v = self.project(x)
        b, h, t, dh = q.shape
        beta = torch.sigmoid(head_gate(self.beta, x))
        state = x.new_zeros(b, h, dh, dh)
        ys = []
        for i in range(t):
            ki, vi = k[:, :, i : i + 1], v[:, :, i : i + 1]  # (B, H, 1, dh) rows
            err = vi - ki @ state
            state = state + beta[:, :, i, None, None] * ki.transpose(-1, -2) @ err
            ys.append(q[:, :, i : i + 1] @ state)
        return self.finish(torch.cat(ys, dim=2))
