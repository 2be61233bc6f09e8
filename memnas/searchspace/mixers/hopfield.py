"""Causal modern Hopfield layer (Ramsauer et al., 2021)."""

from __future__ import annotations

from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads


@register_mixer
class HopfieldLayer(Mixer):
    """Causal modern (continuous) Hopfield layer with a fixed inverse temperature.

    Source: Ramsauer et al., "Hopfield Networks is All You Need", ICLR 2021
    (https://arxiv.org/abs/2008.02217). The update rule
    ``xi_new = X softmax(beta X^T xi)`` retrieves from the stored patterns ``X``
    with the state pattern ``xi``. As the paper's ``Hopfield`` layer (Eq. 10), the
    state patterns are ``Q = R W_Q``, the stored patterns ``K = Y W_K``, and the
    retrieved patterns are projected from the stored ones, ``V = K W_V``:
    ``Z = softmax(beta Q K^T) K W_V``, per head, with a causal mask (position ``t``
    stores the patterns ``0..t``), followed by an output projection.

    With ``beta = 1/sqrt(d_head)`` one update step is exactly softmax attention
    (`SoftmaxAttention`) whose value projection is ``W_K W_V``; ``beta`` is a fixed
    hyperparameter here (a search decision), not learned. Larger ``beta`` makes the
    retrieval sharper (closer to one stored pattern), smaller ``beta`` averages
    more patterns (metastable states).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      beta: Inverse temperature of the softmax, > 0.
    """

    num_heads: int = 1
    beta: float = 1.0

    def build(self, d_model: int) -> nn.Module:
        """Returns a `HopfieldModule` of width ``d_model``."""
        self.check(d_model)
        if not self.beta > 0:
            raise ValueError(f"HopfieldLayer: beta must be > 0, got {self.beta!r}")
        return HopfieldModule(d_model, self.num_heads, float(self.beta))

    def summary(self) -> str:
        """E.g. ``"hopfield(h=2,b=0.5)"``."""
        return f"hopfield(h={self.num_heads},b={self.beta:g})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; beta in {0.25, 0.5, 1, 2}."""
        return cls(num_heads=pg.oneof([1, 2, 4]), beta=pg.oneof([0.25, 0.5, 1.0, 2.0]))


class HopfieldModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head Hopfield retrieval."""

    def __init__(self, d_model: int, num_heads: int, beta: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.beta = beta
        d_head = d_model // num_heads
        self.query = nn.Linear(d_model, d_model, bias=False)  # W_Q (state patterns)
        self.key = nn.Linear(d_model, d_model, bias=False)  # W_K (stored patterns)
        # W_V, per head, applied to the projected stored patterns.
        self.value = nn.Parameter(torch.empty(num_heads, d_head, d_head))
        nn.init.normal_(self.value, std=d_head**-0.5)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.query(x), self.num_heads)
        k = split_heads(self.key(x), self.num_heads)
        v = torch.einsum("bhtd,hde->bhte", k, self.value)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.beta)
        return self.out(merge_heads(y))
