"""Mixture-of-Memories: routed linear-attention memories (Du et al., 2025)."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads
from memnas.searchspace.mixers.linear_attention import (
    CHUNK_SIZE,
    FEATURE_MAPS,
    chunked_linear_attention,
    recurrent_linear_attention,
)


@register_mixer
class MixtureOfMemories(Mixer):
    """Mixture-of-Memories (MoM): a router sends each token to ``top_k`` of several memories.

    Source: Du, Sun, Lan, Hu and Cheng, "MoM: Linear Sequence Modeling with
    Mixture-of-Memories", 2025 (https://arxiv.org/abs/2502.13685; official code
    https://github.com/OpenSparseLLMs/MoM, ``mom_linear_attn.py``). Per token ``x_t``:

    - Router: ``s_t = softmax(x_t W_g)`` over the ``num_memories`` memories; the
      ``top_k`` largest are kept and renormalised to sum to 1 (``g_t^m``, 0 for
      the others).
    - Each memory ``m`` has its own key and value projections ``k_t^m = phi(x_t W_k^m)``,
      ``v_t^m = x_t W_v^m`` and a linear-attention matrix state, written only by
      the tokens routed to it: ``M_t^m = M_{t-1}^m + k_t^m{}^T v_t^m`` if ``m`` is
      among the token's top-k, else ``M_t^m = M_{t-1}^m`` (as in the paper and its
      code, the write is not scaled; the router weights mix the read-outs).
    - An optional shared memory is written by every token and read with weight 1.
    - Read-out with the shared query ``q_t = phi(x_t W_q)``:
      ``o_t = q_t (sum_m g_t^m M_t^m + M_t^shared)``, then an RMSNorm per head (the
      official code's output norm) and an output projection.

    The built module's ``forward`` runs every memory's chunkwise-parallel linear
    attention at once, with the keys of tokens not routed to a memory zeroed;
    ``reference_forward`` runs the token-by-token recurrence. Both compute the same
    function. Unlike the paper's code this drops no tokens (no capacity limit) and
    adds no load-balancing loss. With ``top_k=1`` the renormalised weight is
    identically 1, so the router would get no gradient; there the weight is
    ``p / stop_gradient(p)`` (value 1, as in the paper, gradient as a Switch-style gate).

    Attributes:
      num_memories: Number of routed memories, >= 1.
      top_k: Memories each token writes to and reads from, ``1 <= top_k <= num_memories``.
      shared_memory: Add a memory that every token writes to and reads from.
      num_heads: Number of heads; must divide ``d_model``.
      feature_map: Feature map of queries and keys, a name in
        `memnas.searchspace.mixers.linear_attention.FEATURE_MAPS`.
    """

    num_memories: int = 4
    top_k: int = 2
    shared_memory: bool = False
    num_heads: int = 1
    feature_map: str = "elu+1"

    def build(self, d_model: int) -> nn.Module:
        """Returns a `MixtureOfMemoriesModule` of width ``d_model``."""
        self.check(d_model)
        if not 1 <= self.top_k <= self.num_memories:
            raise ValueError(
                "MixtureOfMemories: need 1 <= top_k <= num_memories, got "
                f"top_k={self.top_k}, num_memories={self.num_memories}"
            )
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"MixtureOfMemories: feature_map must be one of {sorted(FEATURE_MAPS)}, "
                f"got {self.feature_map!r}"
            )
        return MixtureOfMemoriesModule(
            d_model,
            num_memories=self.num_memories,
            top_k=self.top_k,
            shared_memory=self.shared_memory,
            num_heads=self.num_heads,
            feature_map=self.feature_map,
        )

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """One linear-attention state (``d_head x d_head``) per head and per memory."""
        d_head = d_model // self.num_heads
        memories = self.num_memories + int(self.shared_memory)
        return memories * self.num_heads * d_head * d_head

    def summary(self) -> str:
        """E.g. ``"mom(n=4,k=2,shared)"``; heads and feature map appear when not default."""
        parts = [f"n={self.num_memories}", f"k={self.top_k}"]
        if self.shared_memory:
            parts.append("shared")
        if self.num_heads != 1:
            parts.append(f"h={self.num_heads}")
        if self.feature_map != "elu+1":
            parts.append(self.feature_map)
        return f"mom({','.join(parts)})"

    @classmethod
    def space(cls) -> Any:
        """Memories in {2, 4}; top-k in {1, 2}; shared memory or not."""
        return cls(
            num_memories=pg.oneof([2, 4]),
            top_k=pg.oneof([1, 2]),
            shared_memory=pg.oneof([False, True]),
        )

    @classmethod
    def bench_config(cls) -> "MixtureOfMemories":
        """The configuration `memnas bench mixers` times (the largest of the space)."""
        return cls(num_memories=4, top_k=2, shared_memory=True)


class MixtureOfMemoriesModule(nn.Module):
    """(B, T, D) -> (B, T, D) Mixture-of-Memories over linear-attention memories.

    ``forward`` is the chunkwise-parallel form, ``reference_forward`` the
    token-by-token recurrence of the same function.
    """

    def __init__(
        self,
        d_model: int,
        num_memories: int,
        top_k: int,
        shared_memory: bool,
        num_heads: int = 1,
        feature_map: str = "elu+1",
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self.num_memories = num_memories
        self.top_k = top_k
        self.shared_memory = shared_memory
        self.num_heads = num_heads
        self.feature_map = feature_map
        self.chunk_size = chunk_size
        total = num_memories + int(shared_memory)
        self.router = nn.Linear(d_model, num_memories, bias=False)  # W_g
        self.query = nn.Linear(d_model, d_model, bias=False)  # W_q, shared by the memories
        # W_k^m and W_v^m of every memory (the shared one last), stacked.
        self.key = nn.Linear(d_model, total * d_model, bias=False)
        self.value = nn.Linear(d_model, total * d_model, bias=False)
        self.norm = nn.RMSNorm(d_model // num_heads, eps=1e-5)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Routing of ``x`` ``(B, T, D)``.

        Returns:
          ``(weights, written)``, both ``(B, T, M)`` with ``M`` the number of memories
          (the shared one last): the read-out weights (renormalised top-k scores, 0
          for memories a token is not routed to, 1 for the shared memory) and the
          0/1 indicator of the memories each token writes to.
        """
        scores = torch.softmax(self.router(x), dim=-1)
        top, index = scores.topk(self.top_k, dim=-1)
        if self.top_k == 1:
            top = top / top.detach()  # == 1, but the router still gets a gradient
        else:
            top = top / top.sum(dim=-1, keepdim=True)
        weights = torch.zeros_like(scores).scatter(-1, index, top)
        written = torch.zeros_like(scores).scatter(-1, index, 1.0)
        if self.shared_memory:
            ones = scores.new_ones(*scores.shape[:-1], 1)
            weights = torch.cat([weights, ones], dim=-1)
            written = torch.cat([written, ones], dim=-1)
        return weights, written

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Chunkwise-parallel form: ``(B, T, D) -> (B, T, D)``."""
        return self._mix(x, lambda q, k, v: chunked_linear_attention(q, k, v, self.chunk_size))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token-by-token recurrent form of `forward` (slow; for tests and benchmarks)."""
        return self._mix(x, recurrent_linear_attention)

    def _mix(
        self,
        x: torch.Tensor,
        kernel: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        b, t, d = x.shape
        phi, _ = FEATURE_MAPS[self.feature_map]
        weights, written = self.route(x)  # (B, T, M)
        heads = self.num_heads
        q = phi(split_heads(self.query(x), heads))  # (B, H, T, dh)
        k = phi(self.key(x).view(b, t, -1, heads, d // heads)) * written[..., None, None]
        v = self.value(x).view(b, t, -1, heads, d // heads)
        k, v = (z.permute(0, 2, 3, 1, 4) for z in (k, v))  # (B, M, H, T, dh)
        reads = kernel(q[:, None], k, v)  # (B, M, H, T, dh): q_t M_t^m for every memory
        y = (reads * weights.permute(0, 2, 1)[:, :, None, :, None]).sum(dim=1)
        return self.out(merge_heads(self.norm(y)))
