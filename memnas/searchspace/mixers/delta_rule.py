"""DeltaNet: the delta rule as a sequence mixer (Schlag et al., 2021; Yang et al., 2024)."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._ops_mixer import OpMixerModule
from memnas.searchspace.mixers._recurrent import gate_linear


@register_mixer
class DeltaNet(Mixer):
    """Causal multi-head DeltaNet: a fast-weight matrix memory written by the delta rule.

    Sources: Schlag, Irie, Schmidhuber, "Linear Transformers Are Secretly Fast Weight
    Programmers", ICML 2021 (https://arxiv.org/abs/2102.11174); Yang, Wang, Zhang,
    Shen, Kim, "Parallelizing Linear Transformers with the Delta Rule over Sequence
    Length", NeurIPS 2024 (https://arxiv.org/abs/2406.06484). Per head, with
    L2-normalised ``q_t, k_t`` and ``beta_t = sigmoid(w_beta . x_t + b)``::

        S_t = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T,    o_t = S_t q_t

    (``S_0 = 0``, no query scale), then a per-head RMS norm and an output projection.

    Training form: `memnas.ops.delta_rule`, Yang et al.'s chunkwise algorithm (the
    UT transform / WY representation inside chunks, a loop over chunks only; fla's
    kernel on CUDA). Exact: the chunk size changes the speed, not the function.
    ``reference_forward`` runs `memnas.ops.delta_rule_reference` token by token.

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

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The ``H`` matrices ``S`` of ``(d_model/H)^2`` numbers: ``d_model^2 / H``.

        Independent of ``max_len`` (a fixed-size recurrent state; DeltaNet has no
        short convolution, so nothing else is cached).
        """
        self.check(d_model)
        return d_model * (d_model // self.num_heads)

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; the chunk size is fixed (it does not change the function)."""
        return cls(num_heads=pg.oneof([1, 2, 4]))

    @classmethod
    def bench_config(cls) -> "DeltaNet":
        """The configuration `memnas bench mixers` times."""
        return cls(num_heads=2)


class DeltaNetModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal multi-head delta-rule memory (see `DeltaNet`).

    ``qkv`` projects to queries, keys and values (L2-normalised ``q``, ``k``), ``beta``
    gives one write strength per head, ``out`` projects the RMS-normalised heads back.
    """

    op_name = "delta_rule"

    def __init__(self, d_model: int, num_heads: int, chunk_size: int = 64) -> None:
        super().__init__(chunk_size)
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.beta = gate_linear(d_model, num_heads, bias=0.0)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections around ``op`` (`memnas.ops.delta_rule` or its reference)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.d_head).unbind(2)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        o, _ = op(q, k, v, beta=torch.sigmoid(self.beta(x)), scale=1.0)
        o = F.rms_norm(o, o.shape[-1:], eps=1e-6)
        return self.out(o.reshape(b, t, d))
