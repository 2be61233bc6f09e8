"""Causal multi-head softmax attention (Vaswani et al., 2017)."""

from __future__ import annotations

from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads


@register_mixer
class SoftmaxAttention(Mixer):
    """Causal multi-head softmax attention.

    Source: Vaswani et al., "Attention Is All You Need", NeurIPS 2017
    (https://arxiv.org/abs/1706.03762). Computed with
    ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, scale
    ``1/sqrt(d_head)``, no biases.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
    """

    num_heads: int = 1

    def build(self, d_model: int) -> nn.Module:
        """Returns a `SoftmaxAttentionModule` of width ``d_model``."""
        self.check(d_model)
        return SoftmaxAttentionModule(d_model, self.num_heads)

    def summary(self) -> str:
        """E.g. ``"attn(h=2)"``."""
        return f"attn(h={self.num_heads})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}."""
        return cls(num_heads=pg.oneof([1, 2, 4]))


class SoftmaxAttentionModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head softmax attention."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(merge_heads(y))
