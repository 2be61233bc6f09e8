"""Causal linear attention (Katharopoulos et al., 2020)."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads

# name -> (feature map, whether its values are non-negative).
FEATURE_MAPS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "elu+1": (lambda x: F.elu(x) + 1.0, True),
    "relu": (F.relu, True),
    "identity": (lambda x: x, False),
}


@register_mixer
class LinearAttention(Mixer):
    """Causal multi-head linear attention, parallel (masked matmul) form.

    Source: Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive
    Transformers with Linear Attention", ICML 2020 (https://arxiv.org/abs/2006.16236).
    ``y_t = sum_{s<=t} (phi(q_t) . phi(k_s)) v_s / (sum_{s<=t} phi(q_t) . phi(k_s) + eps)``.
    The recurrent view keeps a ``d_head x d_head`` state per head; this version
    computes the equivalent masked ``(T, T)`` form, which is simple and exact.

    For feature maps that can be negative (``"identity"``) the denominator is not
    a sum of positive terms and can vanish, so it is replaced by a LayerNorm of
    each head's output (NormAttention, Qin et al., "The Devil in Linear Transformer",
    EMNLP 2022, https://arxiv.org/abs/2210.10340).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      feature_map: One of `FEATURE_MAPS`: ``"elu+1"`` (the paper's),
        ``"relu"``, ``"identity"``.
    """

    num_heads: int = 1
    feature_map: str = "elu+1"

    def build(self, d_model: int) -> nn.Module:
        """Returns a `LinearAttentionModule` of width ``d_model``."""
        self.check(d_model)
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"LinearAttention: feature_map must be one of {sorted(FEATURE_MAPS)}, "
                f"got {self.feature_map!r}"
            )
        return LinearAttentionModule(d_model, self.num_heads, self.feature_map)

    def summary(self) -> str:
        """E.g. ``"linear(h=2,elu+1)"``."""
        return f"linear(h={self.num_heads},{self.feature_map})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; feature map in {"elu+1", "relu", "identity"}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]),
            feature_map=pg.oneof(["elu+1", "relu", "identity"]),
        )


class LinearAttentionModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head linear attention."""

    def __init__(self, d_model: int, num_heads: int, feature_map: str, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.feature_map = feature_map
        self.eps = eps
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi, positive = FEATURE_MAPS[self.feature_map]
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = phi(q), phi(k)
        t = x.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = (q @ k.transpose(-1, -2)).masked_fill(~mask, 0.0)  # (B, H, T, T)
        y = scores @ v
        if positive:
            y = y / (scores.sum(dim=-1, keepdim=True) + self.eps)
        else:
            y = F.layer_norm(y, y.shape[-1:])
        return self.out(merge_heads(y))
