"""Miras test-time memory (Behrouz et al., 2025): structure, bias, retention, learner.

The spec (`MirasMemory`) is here; its torch module (`OnlineMemoryModule`) is in
`memnas.searchspace.mixers.miras_module`.
"""

from __future__ import annotations

from typing import Any

import pyglove as pg
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers.miras_module import (
    LEARNERS,
    MLP_EXPANSION,
    OBJECTIVES,
    RETENTIONS,
    STRUCTURES,
    OnlineMemoryModule,
)

__all__ = ["LEARNERS", "MLP_EXPANSION", "MirasMemory", "OBJECTIVES", "OnlineMemoryModule",
           "RETENTIONS", "STRUCTURES"]


@register_mixer
class MirasMemory(Mixer):
    """Test-time memory whose four Miras design axes are separate decisions.

    Source: Behrouz, Razaviyayn, Zhong, Mirrokni, "It's All Connected: A Journey
    Through Test-Time Memorization, Attentional Bias, Retention, and Online
    Optimization", 2025 (https://arxiv.org/abs/2504.13173). Per head, a memory
    ``M`` (parameters ``W``) maps L2-normalised keys to values and is trained
    online, one generic gradient step per token on an attentional-bias loss
    ``l(W; k_t, v_t)``::

        S_t = eta_t S_{t-1} - theta_t grad_W l(W; k_t, v_t)     (learner "momentum")
        S_t =               - theta_t grad_W l(W; k_t, v_t)     (learner "gd")
        W_t = a_t W_{t-1} + S_t                                 (retention: a_t = 1 - alpha_t)
        y_t = M_{W_t}(q_t)                                      (read after the update)

    ``theta_t = sigmoid(w_theta . x_t + b)`` and (momentum) ``eta_t = sigmoid(w_eta .
    x_t + b)`` are data-dependent per head, as in Titans. Each token's gradient is
    clipped to Frobenius norm ``max_grad_norm`` (over all memory parameters of the
    head; a hard version of the ``max_grad_norm`` soft clamp of the unofficial
    ``lucidrains/titans-pytorch``, not in the paper): without it the ``"lp"`` and
    ``"mlp"`` memories can diverge to inf when the gates are large; with it every
    step is bounded, so the memory grows at most polynomially in time. The default
    (10) rarely acts on the linear memories, whose errors are of the size of the
    values.

    Axes:

    - ``structure``: ``"vector"`` (``M(k) = w * k``, diagonal), ``"matrix"``
      (``M(k) = k W``) or ``"mlp"`` (``M(k) = k + silu(k W1) W2``, hidden width
      ``2 * d_head``, residual as in Titans).
    - ``objective`` (attentional bias, with ``e = M(k) - v``): ``"dot"``
      (``-<M(k), v>``, Hebbian), ``"l2"`` (``|e|^2 / 2``), ``"lp"``
      (``sum |e|^p / p``, ``p`` below; Moneta's bias) or ``"huber"`` (Huber loss with
      threshold ``huber_delta``; Yaad's bias, here with a constant threshold).
    - ``retention``: ``"none"`` (``a_t = 1``), ``"constant"`` (a learned decay per
      head, independent of the input) or ``"data"`` (``a_t = sigmoid(w . x_t + b)``).
    - ``learner``: ``"gd"`` (one gradient step) or ``"momentum"`` (Titans' surprise).

    Reductions (with ``max_grad_norm=None``): ``matrix/dot/none/gd`` is linear
    attention with identity feature map (on normalised q, k) and per-token value
    weights ``theta_t``; ``matrix/l2/none/gd`` with ``chunk_size=1`` is the delta
    rule (`DeltaNet`, ``beta_t = theta_t``); ``matrix/l2/data/gd`` is a gated delta
    rule (Gated DeltaNet, Yang et al. 2024, decays ``S`` before the delta step; here
    decay and step both start from ``W_{t-1}``); ``matrix/l2/data/momentum`` and
    ``mlp/l2/data/momentum`` are `TitansMemory` of depth 1 and 2; ``vector/dot`` is
    an elementwise (diagonal) linear memory.

    Chunked training form (Titans' mini-batch gradient descent): inside each chunk
    of ``chunk_size`` tokens every gradient is taken at the memory of the chunk
    start, so momentum and decay become linear recurrences that are solved in
    parallel with log-space cumulative sums and ``(C, C)`` matmuls; only the chunks
    are looped over. For ``chunk_size > 1`` this differs from per-token online
    gradient descent (except for ``"dot"``, whose gradient does not depend on the
    memory); ``chunk_size=1`` is the exact per-token recurrence. The module's
    ``reference_forward`` computes the same chunk semantics token by token, with
    the gradient taken by autograd.

    Attributes:
      structure: One of `STRUCTURES`.
      objective: One of `OBJECTIVES`.
      retention: One of `RETENTIONS`.
      learner: One of `LEARNERS`.
      num_heads: Number of heads; must divide ``d_model``.
      chunk_size: Tokens per chunk whose gradients share the chunk-start memory.
      p: Exponent of the ``"lp"`` objective, ``>= 1``.
      huber_delta: Threshold of the ``"huber"`` objective, ``> 0``.
      max_grad_norm: Per-token gradient-norm clip, ``> 0``; None turns it off.
    """

    structure: str = "matrix"
    objective: str = "l2"
    retention: str = "data"
    learner: str = "momentum"
    num_heads: int = 1
    chunk_size: int = 16
    p: float = 3.0
    huber_delta: float = 1.0
    max_grad_norm: float | None = 10.0

    def build(self, d_model: int) -> nn.Module:
        """Returns an `OnlineMemoryModule` of width ``d_model``."""
        self.check(d_model)
        return OnlineMemoryModule(
            d_model,
            self.num_heads,
            structure=self.structure,
            objective=self.objective,
            retention=self.retention,
            learner=self.learner,
            chunk_size=self.chunk_size,
            p=self.p,
            huber_delta=self.huber_delta,
            max_grad_norm=self.max_grad_norm,
        )

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The memory's weights per head, twice with momentum (the momentum state).

        Per head: ``d_head`` (vector), ``d_head^2`` (matrix) or
        ``2 * d_head * MLP_EXPANSION * d_head`` (the MLP's two weight matrices).
        """
        d_head = d_model // self.num_heads
        per_head = {"vector": d_head, "matrix": d_head * d_head}.get(
            self.structure, 2 * d_head * MLP_EXPANSION * d_head
        )
        copies = 2 if self.learner == "momentum" else 1
        return copies * self.num_heads * per_head

    def summary(self) -> str:
        """E.g. ``"miras(mlp,huber,data,momentum,h=2)"``."""
        objective = f"l{self.p:g}" if self.objective == "lp" else self.objective
        return (
            f"miras({self.structure},{objective},{self.retention},{self.learner},"
            f"h={self.num_heads})"
        )

    def canonical(self) -> "MirasMemory":
        """Equivalence rules for hashing: what cannot change the function is reset.

        ``p`` matters only to ``"lp"`` and ``huber_delta`` only to ``"huber"``; ``"lp"``
        with ``p == 2`` is ``"l2"``; for ``"dot"`` the gradient does not depend on the
        memory, so the chunked form is exact and ``chunk_size`` is irrelevant.
        """
        defaults = type(self)()
        objective = "l2" if (self.objective == "lp" and self.p == 2.0) else self.objective
        return self.clone(override={
            "objective": objective,
            "p": self.p if objective == "lp" else defaults.p,
            "huber_delta": self.huber_delta if objective == "huber" else defaults.huber_delta,
            "chunk_size": defaults.chunk_size if objective == "dot" else self.chunk_size})

    @classmethod
    def space(cls) -> Any:
        """Every axis a decision (3 x 4 x 3 x 2), heads in {1, 2}; p, delta, chunk fixed."""
        return cls(
            structure=pg.oneof(list(STRUCTURES)),
            objective=pg.oneof(list(OBJECTIVES)),
            retention=pg.oneof(list(RETENTIONS)),
            learner=pg.oneof(list(LEARNERS)),
            num_heads=pg.oneof([1, 2]),
        )

    @classmethod
    def bench_config(cls) -> "MirasMemory":
        """The configuration `memnas bench mixers` times: costly axes (MLP, Huber, momentum)."""
        return cls(structure="mlp", objective="huber", retention="data", learner="momentum")
