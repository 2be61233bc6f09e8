"""HMT-style segment memory around any inner mixer (He et al., NAACL 2025)."""

from __future__ import annotations

import math
from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers.linear_attention import LinearAttention
from memnas.searchspace.mixers.softmax_attention import SoftmaxAttention


@register_mixer
class SegmentMemory(Mixer):
    """An inner mixer run per segment, plus recall of cached memory embeddings of past segments.

    Source: He et al., "HMT: Hierarchical Memory Transformer for Efficient Long
    Context Language Processing", NAACL 2025 (https://arxiv.org/abs/2405.06067).
    Recurrence over segments ``j``: ``h = inner(x_seg_j)``, ``y_t = h_t +
    W_o softmax(q(h_t) K(M_{j-N..j-1})^T) V(M_{j-N..j-1})``, ``M_j = pool(h_seg_j)``.

    The sequence is cut into segments of ``segment`` tokens (the last one padded
    at the end); the inner mixer runs inside each segment independently (all
    segments as one batch), so it never sees across a segment boundary. Each
    segment is summarised by one memory embedding ``M_j``: a learned-query
    attention pooling of the segment's inner output. The embeddings of the last
    ``num_memories`` earlier segments are cached (HMT's long-term memory), and
    every token recalls from them by single-head cross-attention, queried with its
    inner output; the recalled vector is projected and added to the inner output.
    The attention also has a null slot (a learned key, value zero), so a token can
    recall nothing and a lone memory is not a forced copy. A token of segment
    ``j`` only sees embeddings of segments ``< j``, which are complete before
    segment ``j`` starts, so the mixer is causal; the first segment recalls nothing.

    Differences from the paper: HMT queries its memory once per segment with a
    summary of the segment's first half (encoded with a summary token) and
    prepends the recalled embedding as a prompt token to the segment, also
    carrying the previous segment's last tokens (sensory memory), and takes the
    memory embedding from the backbone's output at a trailing memory token. Here
    the query is per token (so that a token needs nothing from later in its
    segment), recall is added to the inner output instead of prompted, and the
    embedding is pooled from the inner output; no sensory memory.

    Attributes:
      inner: The mixer run inside each segment (any `Mixer` spec).
      segment: Tokens per segment.
      num_memories: Cached memory embeddings ``N`` each token recalls from.
    """

    inner: Mixer = SoftmaxAttention(num_heads=1)
    segment: int = 16
    num_memories: int = 4

    def build(self, d_model: int) -> nn.Module:
        """Returns a `SegmentMemoryModule` of width ``d_model``."""
        if not isinstance(self.inner, Mixer):
            raise ValueError(f"SegmentMemory: inner must be a Mixer spec, got {self.inner!r}")
        for name in ("segment", "num_memories"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SegmentMemory: {name} must be an int >= 1, got {value!r}")
        return SegmentMemoryModule(
            self.inner.build(d_model), d_model, self.segment, self.num_memories
        )

    def state_numbers(self, d_model: int, max_len: int) -> int | None:
        """Inner state over one segment + ``N`` cached embeddings + the running pooling.

        A decoder keeps the inner mixer's state for the current segment (for
        attention its KV cache over ``min(segment, max_len)`` tokens; it is reset
        at every segment start), the last ``num_memories`` memory embeddings
        (``N * d_model``) and the current segment's pooling accumulator, an online
        softmax: weighted value sum, normaliser and running maximum
        (``d_model + 2``). None when the inner mixer does not say.
        """
        inner = self.inner.state_numbers(d_model, min(self.segment, max_len))
        if inner is None:
            return None
        return inner + self.num_memories * d_model + d_model + 2

    def summary(self) -> str:
        """E.g. ``"hmt(attn(h=1),s=16,n=4)"``."""
        return f"hmt({self.inner.summary()},s={self.segment},n={self.num_memories})"

    @classmethod
    def space(cls) -> Any:
        """Inner in {attention h=1|2, linear attention h=2}; segment {16, 32}; N {4, 8}."""
        return cls(
            inner=pg.oneof(
                [SoftmaxAttention(num_heads=pg.oneof([1, 2])), LinearAttention(num_heads=2)]
            ),
            segment=pg.oneof([16, 32]),
            num_memories=pg.oneof([4, 8]),
        )


class SegmentMemoryModule(nn.Module):
    """(B, T, D) -> (B, T, D): per-segment inner mixer plus recall of past segments' memories.

    Parameters besides the inner module's: ``pool_query`` (``D``) with
    ``pool_key`` and ``pool_value`` (``D -> D``) for the memory embeddings, and
    ``recall_query``, ``recall_key``, ``recall_value``, ``recall_out`` (``D -> D``)
    with ``null_key`` (``D``), the key of the recall's empty slot.
    """

    def __init__(self, inner: nn.Module, d_model: int, segment: int, num_memories: int) -> None:
        super().__init__()
        self.inner = inner
        self.segment = segment
        self.num_memories = num_memories
        self.scale = d_model**-0.5
        self.pool_query = nn.Parameter(torch.randn(d_model) * d_model**-0.5)
        self.pool_key = nn.Linear(d_model, d_model, bias=False)
        self.pool_value = nn.Linear(d_model, d_model, bias=False)
        self.recall_query = nn.Linear(d_model, d_model, bias=False)
        self.recall_key = nn.Linear(d_model, d_model, bias=False)
        self.recall_value = nn.Linear(d_model, d_model, bias=False)
        self.recall_out = nn.Linear(d_model, d_model, bias=False)
        self.null_key = nn.Parameter(torch.zeros(d_model))

    def segments(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, S, segment, D) inner outputs, segments run independently."""
        b, t, d = x.shape
        n = math.ceil(t / self.segment)
        x = F.pad(x, (0, 0, 0, n * self.segment - t))  # at the end: no real token sees it
        return self.inner(x.reshape(b * n, self.segment, d)).reshape(b, n, self.segment, d)

    def memory_embeddings(self, h: torch.Tensor) -> torch.Tensor:
        """(B, S, segment, D) inner outputs -> (B, S, D), one pooled embedding per segment."""
        scores = self.pool_key(h) @ self.pool_query * self.scale  # (B, S, segment)
        return (scores.softmax(dim=-1).unsqueeze(-1) * self.pool_value(h)).sum(dim=-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.segments(x)  # (B, S, L, D)
        n = h.shape[1]
        mem = self.memory_embeddings(h)  # (B, S, D); segment j's only from segment j
        q = self.recall_query(h).reshape(b, n * self.segment, d)
        scores = q @ self.recall_key(mem).transpose(1, 2) * self.scale  # (B, S*L, S)
        # Token of segment j sees the memories of segments j-N .. j-1.
        seg_of_token = torch.arange(n, device=x.device).repeat_interleave(self.segment)
        lag = seg_of_token[:, None] - torch.arange(n, device=x.device)[None, :]
        visible = (lag >= 1) & (lag <= self.num_memories)  # (S*L, S)
        null = (q @ self.null_key * self.scale).unsqueeze(-1)  # the empty slot, value 0
        scores = torch.cat([null, scores.masked_fill(~visible, float("-inf"))], dim=-1)
        weights = scores.softmax(dim=-1)[..., 1:]
        recall = self.recall_out(weights @ self.recall_value(mem))  # (B, S*L, D)
        return (h.reshape(b, n * self.segment, d) + recall)[:, :t]
