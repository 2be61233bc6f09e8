"""Causal Hopfield layers: modern (Ramsauer et al., 2021) or dense (Krotov & Hopfield, 2016)."""

from __future__ import annotations

from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads

LEARNED = "learned"
POLY_EPS = 1e-6


@register_mixer
class HopfieldLayer(Mixer):
    """Causal modern (continuous) Hopfield layer with a fixed or learned inverse temperature.

    Source: Ramsauer et al., "Hopfield Networks is All You Need", ICLR 2021
    (https://arxiv.org/abs/2008.02217). The update rule
    ``xi_new = X softmax(beta X^T xi)`` retrieves from the stored patterns ``X``
    with the state pattern ``xi``. As the paper's ``Hopfield`` layer (Eq. 10), the
    state patterns are ``Q = R W_Q``, the stored patterns ``K = Y W_K``, and the
    retrieved patterns are projected from the stored ones, ``V = K W_V``:
    ``Z = softmax(beta Q K^T) K W_V``, per head, with a causal mask (position ``t``
    stores the patterns ``0..t``), followed by an output projection.

    With ``beta = 1/sqrt(d_head)`` one update step is exactly softmax attention
    (`SoftmaxAttention`) whose value projection is ``W_K W_V``. Larger ``beta``
    makes the retrieval sharper (closer to one stored pattern), smaller ``beta``
    averages more patterns (metastable states). ``beta`` is either a fixed
    hyperparameter (a search decision) or, with ``beta="learned"``, a trained
    parameter per head initialised at ``1/sqrt(d_head)`` (the paper's Hopfield
    layers also allow a trainable scaling).

    `DenseHopfield` is the same layer with the dense associative memory's
    polynomial interaction instead of the softmax.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      beta: Inverse temperature of the softmax, > 0, or ``"learned"``.
    """

    num_heads: int = 1
    beta: float | str = 1.0

    def build(self, d_model: int) -> nn.Module:
        """Returns a `HopfieldModule` of width ``d_model``."""
        self.check(d_model)
        if self.beta == LEARNED:
            return HopfieldModule(d_model, self.num_heads, LEARNED)
        if isinstance(self.beta, str) or not self.beta > 0:
            raise ValueError(
                f"HopfieldLayer: beta must be > 0 or {LEARNED!r}, got {self.beta!r}"
            )
        return HopfieldModule(d_model, self.num_heads, float(self.beta))

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The KV cache of all ``max_len`` stored patterns: ``2 * max_len * d_model``.

        ``V = K W_V`` is a function of the keys, so a decoder could keep the keys
        alone and recompute the values per step; the figure counts the usual cache.
        """
        return 2 * max_len * d_model

    def summary(self) -> str:
        """E.g. ``"hopfield(h=2,b=0.5)"`` or ``"hopfield(h=2,b=learned)"``."""
        beta = self.beta if isinstance(self.beta, str) else f"{self.beta:g}"
        return f"hopfield(h={self.num_heads},b={beta})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; beta in {0.25, 0.5, 1, 2, "learned"}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]), beta=pg.oneof([0.25, 0.5, 1.0, 2.0, LEARNED])
        )


@register_mixer
class DenseHopfield(Mixer):
    """Causal dense associative memory: `HopfieldLayer` with a rectified polynomial interaction.

    Source: Krotov & Hopfield, "Dense Associative Memory for Pattern Recognition",
    NeurIPS 2016 (https://arxiv.org/abs/1606.01159). With the projections of
    `HopfieldLayer`, retrieval
    ``z_t = sum_{s<=t} F(q_t . k_s) v_s / (sum_{s<=t} F(q_t . k_s) + eps)`` with the
    separation function ``F(x) = max(x, 0)^degree``; a higher ``degree``
    separates the stored patterns more sharply (capacity grows as
    ``d^(degree-1)``), and a query that matches no stored pattern positively
    retrieves (nearly) nothing. An inverse temperature would scale out of the
    normalised weights (``F(beta x) = beta^n F(x)``), so there is none.

    A sibling of `HopfieldLayer` rather than a field of it: a new field would
    change the JSON, and so the stored hashes, of every `HopfieldLayer` candidate.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      degree: The polynomial's degree ``n >= 1``.
    """

    num_heads: int = 1
    degree: int = 3

    def build(self, d_model: int) -> nn.Module:
        """Returns a `HopfieldModule` with the polynomial interaction at width ``d_model``."""
        self.check(d_model)
        if not isinstance(self.degree, int) or isinstance(self.degree, bool) or self.degree < 1:
            raise ValueError(f"DenseHopfield: degree must be an int >= 1, got {self.degree!r}")
        return HopfieldModule(d_model, self.num_heads, 1.0, degree=self.degree)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The KV cache of all ``max_len`` stored patterns: ``2 * max_len * d_model``."""
        return 2 * max_len * d_model

    def summary(self) -> str:
        """E.g. ``"dhopfield(h=2,n=3)"``."""
        return f"dhopfield(h={self.num_heads},n={self.degree})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; degree in {2, 3, 4}."""
        return cls(num_heads=pg.oneof([1, 2, 4]), degree=pg.oneof([2, 3, 4]))


class HopfieldModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head Hopfield retrieval.

    ``beta`` is a float, or ``"learned"``: then ``self.beta`` is a parameter of
    shape ``(num_heads,)`` initialised at ``1/sqrt(d_head)``. With ``degree``
    (not None) the weights are the rectified polynomial ``max(beta q.k, 0)^degree``
    normalised over the causal keys (plus `POLY_EPS`) instead of the softmax.
    """

    def __init__(
        self, d_model: int, num_heads: int, beta: float | str, degree: int | None = None
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.degree = degree
        d_head = d_model // num_heads
        self.beta: float | nn.Parameter
        if beta == LEARNED:
            self.beta = nn.Parameter(torch.full((num_heads,), d_head**-0.5))
        else:
            self.beta = float(beta)
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
        if self.degree is not None:
            return self.out(merge_heads(poly_retrieval(q, k, v, self.beta, self.degree)))
        if isinstance(self.beta, nn.Parameter):
            q = q * self.beta[:, None, None]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.beta)
        return self.out(merge_heads(y))


def poly_retrieval(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: float | torch.Tensor, degree: int
) -> torch.Tensor:
    """Causal dense-associative-memory retrieval, (B, H, T, d) -> (B, H, T, d_v).

    ``z_t = sum_{s<=t} w_ts v_s`` with ``w_ts = F(beta q_t . k_s) / (sum_{s'<=t}
    F(beta q_t . k_s') + POLY_EPS)`` and ``F(x) = max(x, 0)^degree``.
    """
    t = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) * beta
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    weights = torch.relu(scores).pow(degree).masked_fill(~causal, 0.0)
    return (weights / (weights.sum(dim=-1, keepdim=True) + POLY_EPS)) @ v
