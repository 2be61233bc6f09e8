"""mLSTM: xLSTM's matrix-memory LSTM as a sequence mixer (Beck et al., NeurIPS 2024)."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._ops_mixer import (
    OpMixerModule,
    ShortConv,
    check_conv,
    conv_decision,
)

FORGET_GATES = ("sigmoid", "exp")
# Initial forget-gate pre-activations spread over the heads (xLSTM's linspace 3..6):
# forget gates sigmoid(3..6) = 0.953..0.998 at the start.
FORGET_BIAS_RANGE = (3.0, 6.0)


@register_mixer
class MLSTM(Mixer):
    """Causal multi-head mLSTM: a matrix memory with exponential input and gated forget.

    Source: Beck, Poeppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter,
    Hochreiter, "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024
    (https://arxiv.org/abs/2405.04517), the mLSTM (eqs. 19-27). Per head, with input
    gate ``i_t = exp(i~_t)``, forget gate ``f_t = sigmoid(f~_t)`` or ``exp(f~_t)``::

        C_t = f_t C_{t-1} + i_t v_t k_t^T,  n_t = f_t n_{t-1} + i_t k_t,  h_t = C_t q_t / max(|n_t . q_t|, 1)

    (max-stabilised in log space by `memnas.ops.mlstm`; ``q`` scaled by ``d^-1/2``).
    ``q, k, v`` and the gate pre-activations ``i~, f~`` (one per head) are linear in
    the input, with a short causal convolution and SiLU on the q, k path (the mLSTM
    block's ``conv4``; ``conv_kernel=0``: none). Each head's output is layer-normalised
    (the block's multi-head norm), gated by ``silu(W_z x_t)`` and projected back.
    The forget gates start near 1: their biases are spread over ``3..6`` across heads
    (for ``"exp"``, at ``logsigmoid`` of that, so both gates start at the same decay),
    the input gates near ``exp(0)``.

    ``forward`` runs `memnas.ops.mlstm` (chunkwise), ``reference_forward``
    `memnas.ops.mlstm_reference` token by token.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      forget: ``"sigmoid"`` or ``"exp"``: the forget gate's activation.
      conv_kernel: Short convolution size on the q, k path (0: none).
    """

    num_heads: int = 1
    forget: str = "sigmoid"
    conv_kernel: int = 4

    def build(self, d_model: int) -> nn.Module:
        """Returns an `MLSTMModule` of width ``d_model``.

        Raises:
          ValueError: naming ``num_heads``, ``forget`` or ``conv_kernel`` if invalid.
        """
        self._validate(d_model)
        return MLSTMModule(d_model, self.num_heads, self.forget, self.conv_kernel)

    def summary(self) -> str:
        """E.g. ``"mlstm(h=2,sigmoid,c4)"``."""
        return f"mlstm(h={self.num_heads},{self.forget},c{self.conv_kernel})"

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """Per head ``C`` (``(d_model/H)^2``), ``n`` (``d_model/H``), ``m`` (1), plus the conv.

        ``d_model^2 / H + d_model + H + 2 d_model (conv_kernel - 1)``; independent of
        ``max_len``.
        """
        self._validate(d_model)
        h, dh = self.num_heads, d_model // self.num_heads
        return h * (dh * dh + dh + 1) + ShortConv.state_numbers(2 * d_model, self.conv_kernel)

    def _validate(self, d_model: int) -> None:
        self.check(d_model)
        check_conv("MLSTM", self.conv_kernel)
        if self.forget not in FORGET_GATES:
            raise ValueError(f"MLSTM: forget must be one of {FORGET_GATES}, got {self.forget!r}")

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; forget gate in {"sigmoid", "exp"}; short conv in {0, 4}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]),
            forget=pg.oneof(list(FORGET_GATES)),
            conv_kernel=conv_decision(),
        )

    @classmethod
    def bench_config(cls) -> "MLSTM":
        """The configuration `memnas bench mixers` times."""
        return cls(num_heads=2, forget="sigmoid", conv_kernel=4)


class MLSTMModule(OpMixerModule):
    """(B, T, D) -> (B, T, D) causal multi-head mLSTM (see `MLSTM`).

    ``in_proj`` gives ``q | k | v | z`` (``4 D``, ``z`` the output gate's input),
    ``gates`` the input and forget pre-activations (``H`` each, with biases).
    """

    op_name = "mlstm"

    def __init__(
        self, d_model: int, num_heads: int, forget: str, conv_kernel: int, chunk_size: int = 64
    ) -> None:
        super().__init__(chunk_size)
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.forget = forget
        self.in_proj = nn.Linear(d_model, 4 * d_model, bias=False)
        self.conv = ShortConv(2 * d_model, conv_kernel)
        self.gates = nn.Linear(d_model, 2 * num_heads)
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.out = nn.Linear(d_model, d_model, bias=False)
        with torch.no_grad():  # xLSTM: zero gate weights, i~ bias ~ N(0, 0.1), f~ bias 3..6
            self.gates.weight.zero_()
            self.gates.bias[:num_heads].normal_(0.0, 0.1)
            f_bias = torch.linspace(*FORGET_BIAS_RANGE, num_heads)
            self.gates.bias[num_heads:] = f_bias if forget == "sigmoid" else F.logsigmoid(f_bias)

    def mix(self, x: torch.Tensor, op: Callable[..., Any]) -> torch.Tensor:
        """Projections around ``op`` (`memnas.ops.mlstm` or its reference)."""
        b, t, _ = x.shape
        h, dh, d = self.num_heads, self.d_head, self.d_model
        qk, v, z = self.in_proj(x).split([2 * d, d, d], dim=-1)
        q, k = self.conv(qk).reshape(b, t, 2, h, dh).unbind(2)
        i, f = self.gates(x).split([h, h], dim=-1)
        o, _ = op(q, k, v.reshape(b, t, h, dh), i, f, forget=self.forget)
        o = F.layer_norm(o, (dh,), eps=1e-5).reshape(b, t, d) * self.norm_weight
        return self.out(o * F.silu(z))
