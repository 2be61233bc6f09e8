"""Causal multi-head softmax attention, full or sliding-window (Vaswani et al., 2017)."""

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
    """Causal multi-head softmax attention, optionally restricted to a sliding window.

    Source: Vaswani et al., "Attention Is All You Need", NeurIPS 2017
    (https://arxiv.org/abs/1706.03762). Computed with
    ``torch.nn.functional.scaled_dot_product_attention``, scale ``1/sqrt(d_head)``,
    no biases. With a ``window`` the attention is local (sliding-window attention,
    Beltagy et al., "Longformer", 2020, https://arxiv.org/abs/2004.05150): position
    ``t`` attends to positions ``t - window + 1 .. t``, through an explicit causal
    band mask. A window at least as long as the sequence is full causal attention.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      window: Number of positions each query sees, itself included; ``None`` means
        full causal attention.
    """

    num_heads: int = 1
    window: int | None = None

    def build(self, d_model: int) -> nn.Module:
        """Returns a `SoftmaxAttentionModule` of width ``d_model``."""
        self.check(d_model)
        if self.window is not None and self.window < 1:
            raise ValueError(
                f"SoftmaxAttention: window must be None or >= 1, got {self.window!r}"
            )
        return SoftmaxAttentionModule(d_model, self.num_heads, self.window)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The KV cache: keys and values of the last ``min(window, max_len)`` tokens."""
        kept = max_len if self.window is None else min(self.window, max_len)
        return 2 * kept * d_model

    def summary(self) -> str:
        """E.g. ``"attn(h=2)"``, or ``"attn(h=2,w=8)"`` with a window."""
        if self.window is None:
            return f"attn(h={self.num_heads})"
        return f"attn(h={self.num_heads},w={self.window})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; window in {None (full), 8, 32}."""
        return cls(num_heads=pg.oneof([1, 2, 4]), window=pg.oneof([None, 8, 32]))


def causal_band_mask(
    length: int, window: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean ``(length, length)`` mask, True where query ``i`` may attend to key ``j``.

    That is ``j <= i`` and ``i - j < window``.
    """
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    return (j <= i) & (i - j < window)


class SoftmaxAttentionModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head softmax attention (full or windowed)."""

    def __init__(self, d_model: int, num_heads: int, window: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        t = x.shape[1]
        if self.window is None or self.window >= t:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = causal_band_mask(t, self.window, device=x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(merge_heads(y))
