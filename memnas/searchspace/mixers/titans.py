"""Titans neural long-term memory (Behrouz et al., 2024), as a sequence mixer."""

from __future__ import annotations

from typing import Any

import pyglove as pg
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers.miras import OnlineMemoryModule


@register_mixer
class TitansMemory(Mixer):
    """Titans' neural memory: an MLP trained at test time with momentum and forgetting.

    Source: Behrouz, Zhong, Mirrokni, "Titans: Learning to Memorize at Test Time",
    2024 (https://arxiv.org/abs/2501.00663), the long-term memory module used as a
    layer on its own (the paper's "MAL"-style memory layer without the attention
    branch or persistent tokens). Per head, with L2-normalised ``q_t, k_t`` and
    the associative loss ``l(M; x_t) = |M(k_t) - v_t|^2 / 2`` (the paper's
    ``|M(k) - v|^2``; the factor 2 is absorbed in ``theta``)::

        S_t = eta_t S_{t-1} - theta_t grad l(M_{t-1}; x_t)   (momentum: "surprise")
        M_t = (1 - alpha_t) M_{t-1} + S_t                    (forgetting gate)
        y_t = M_t(q_t)                                       (read after the update)

    ``eta_t``, ``theta_t`` and ``1 - alpha_t`` are data-dependent per head and per
    token, ``sigmoid`` of linear projections of ``x_t``, as in the paper (which
    also allows them to be constant per chunk; per token is the general case).
    ``depth=1`` is a linear (matrix) memory ``M(k) = k W``; ``depth=2`` a 2-layer
    MLP with residual ``M(k) = k + silu(k W1) W2`` (hidden width ``2 * d_head``).
    The memory's initial weights are learned (outer-loop parameters). Each token's
    gradient is clipped to norm ``max_grad_norm`` (a hard version of the
    ``max_grad_norm`` soft clamp of the unofficial ``lucidrains/titans-pytorch``; not
    in the paper), which keeps the MLP memory finite when the
    learned gates grow.

    Training form (the paper's Sec. 3.2): tokens are split into chunks of
    ``chunk_size``; inside a chunk every gradient is taken w.r.t. the memory at
    the chunk start (mini-batch gradient descent), so momentum and decay are
    linear recurrences solved in parallel (log-space cumulative products and
    ``(C, C)`` matmuls), with a loop over chunks only. For ``chunk_size > 1`` this
    is not the per-token recurrence; ``chunk_size=1`` is. The built module's
    ``reference_forward`` computes the same chunk semantics token by token.

    This is `MirasMemory` with ``structure="matrix"`` (depth 1) or ``"mlp"``
    (depth 2), ``objective="l2"``, ``retention="data"``, ``learner="momentum"``.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      depth: Memory depth, 1 (matrix) or 2 (MLP).
      chunk_size: Tokens per chunk whose gradients share the chunk-start memory.
      max_grad_norm: Per-token gradient-norm clip, ``> 0``; None turns it off.
    """

    num_heads: int = 1
    depth: int = 2
    chunk_size: int = 16
    max_grad_norm: float | None = 10.0

    def build(self, d_model: int) -> nn.Module:
        """Returns an `OnlineMemoryModule` with Titans' settings at width ``d_model``."""
        self.check(d_model)
        if self.depth not in (1, 2):
            raise ValueError(f"TitansMemory: depth must be 1 or 2, got {self.depth!r}")
        return OnlineMemoryModule(
            d_model,
            self.num_heads,
            structure="matrix" if self.depth == 1 else "mlp",
            objective="l2",
            retention="data",
            learner="momentum",
            chunk_size=self.chunk_size,
            max_grad_norm=self.max_grad_norm,
        )

    def canonical(self) -> Any:
        """Equivalence rule for hashing: Titans is the `MirasMemory` it builds (same module)."""
        from memnas.searchspace.mixers.miras import MirasMemory

        return MirasMemory(structure="matrix" if self.depth == 1 else "mlp", objective="l2",
                           retention="data", learner="momentum", num_heads=self.num_heads,
                           chunk_size=self.chunk_size, max_grad_norm=self.max_grad_norm)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """As the `MirasMemory` it builds: memory weights and momentum per head."""
        return self.canonical().state_numbers(d_model, max_len)

    def summary(self) -> str:
        """E.g. ``"titans(h=2,L=2)"``."""
        return f"titans(h={self.num_heads},L={self.depth})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2}; depth in {1, 2}; chunk size fixed at 16."""
        return cls(num_heads=pg.oneof([1, 2]), depth=pg.oneof([1, 2]))

    @classmethod
    def bench_config(cls) -> "TitansMemory":
        """The configuration `memnas bench mixers` times: the paper's 2-layer MLP memory."""
        return cls(num_heads=1, depth=2)
