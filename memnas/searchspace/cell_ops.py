"""The primitives of memory cells: each a `CellOp` spec and the torch module it builds."""

from __future__ import annotations

from typing import Any

import pyglove as pg
from torch import nn

from memnas.searchspace._cell_graph import PRODUCT, SLOTS, SUM, NodeKind
from memnas.searchspace._cell_modules import (
    ACTIVATIONS,
    AttentionModule,
    CausalConv,
    DecayedScanModule,
    DeltaScanModule,
    Elementwise,
    LinearAttnModule,
    RMSNorm,
    product,
)
from memnas.searchspace.mixers.linear_attention import FEATURE_MAPS

HEADS = (1, 2, 4)


class CellOp(pg.Object):
    """Spec of the operation of one node of a `memnas.searchspace.Cell`.

    Every node's value is ``(B, T, d_model)``. How an operation takes several
    inputs is a class constant: ``COMBINE = "sum"`` (the default) adds them into
    its one input, ``"product"`` multiplies them, ``"slots"`` fills the ordered
    inputs named by ``SLOTS`` (e.g. ``("q", "k", "v")``) from the node's inputs in
    node order (see `memnas.searchspace.cells` for the rule). ``IDENTITY``: the
    operation returns a single input unchanged (the canonical form drops it).
    """

    COMBINE = SUM
    SLOTS = ()  # not annotated: a class constant, not a symbolic field
    IDENTITY = False

    def build(self, d_model: int) -> nn.Module:
        """A module taking the node's (combined) inputs and returning ``(B, T, d_model)``."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def check(self, d_model: int) -> None:
        """Raises ValueError if this operation cannot be built at width ``d_model``."""
        heads = getattr(self, "num_heads", None)
        if heads is not None and (not isinstance(heads, int) or heads < 1 or d_model % heads):
            raise ValueError(f"{type(self).__name__}: num_heads must be >= 1 and divide "
                             f"d_model, got num_heads={heads!r}, d_model={d_model}")

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """Numbers one sequence's inference state keeps for this node (0: none)."""
        return 0

    def label(self) -> str:
        """A short label, e.g. ``"linear"`` or ``"delta(h=2)"``."""
        return type(self).__name__.lower()

    def kind(self) -> NodeKind:
        """What the cell's graph algorithms need: a key naming the operation, how it combines."""
        cls = type(self)
        key = f"{cls.__module__}.{cls.__qualname__}{sorted(self.sym_init_args.sym_items())!r}"
        return NodeKind(key, self.COMBINE, max(1, len(self.SLOTS)), self.IDENTITY)

    @classmethod
    def space(cls) -> Any:
        """This operation's decisions in `memnas.searchspace.cell_space` (none by default)."""
        return cls()


class Linear(CellOp):
    """A linear projection ``W x`` (``d_model -> d_model``, no bias, as the mixers' projections)."""

    def build(self, d_model: int) -> nn.Module:
        return nn.Linear(d_model, d_model, bias=False)


class Gate(CellOp):
    """An elementwise gate activation, ``sigmoid`` or ``silu``; multiply it in with `Product`.

    Attributes:
      fn: ``"sigmoid"`` or ``"silu"``.
    """

    fn: str = "silu"

    def build(self, d_model: int) -> nn.Module:
        if self.fn not in ACTIVATIONS:
            raise ValueError(f"Gate: fn must be one of {sorted(ACTIVATIONS)}, got {self.fn!r}")
        return Elementwise(ACTIVATIONS[self.fn])

    def label(self) -> str:
        return self.fn

    @classmethod
    def space(cls) -> Any:
        return cls(fn=pg.oneof(["sigmoid", "silu"]))


class Product(CellOp):
    """The elementwise product of the node's inputs (commutative, any number)."""

    COMBINE = PRODUCT
    IDENTITY = True

    def build(self, d_model: int) -> nn.Module:
        return Elementwise(product)


class Sum(CellOp):
    """The sum of the node's inputs (commutative, any number)."""

    IDENTITY = True

    def build(self, d_model: int) -> nn.Module:
        return nn.Identity()


class Conv(CellOp):
    """A short causal depthwise convolution over time (with bias, no activation).

    Output ``t`` sees inputs ``t - kernel + 1 .. t``; at inference it keeps the last
    ``kernel - 1`` inputs. Mamba's, GLA's and Gated DeltaNet's short convolution is
    this followed by a SiLU `Gate`.

    Attributes:
      kernel: Kernel size, >= 1.
    """

    kernel: int = 4

    def build(self, d_model: int) -> nn.Module:
        if not isinstance(self.kernel, int) or self.kernel < 1:
            raise ValueError(f"Conv: kernel must be an int >= 1, got {self.kernel!r}")
        return CausalConv(d_model, self.kernel)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        return d_model * (self.kernel - 1)

    def label(self) -> str:
        return f"conv{self.kernel}"


class Norm(CellOp):
    """RMS normalisation over the width, with a learned gain (eps 1e-5)."""

    def build(self, d_model: int) -> nn.Module:
        return RMSNorm(d_model)


class LinearAttn(CellOp):
    """Causal linear attention of its ``q, k, v`` inputs (Katharopoulos et al., 2020).

    As `memnas.searchspace.LinearAttention` without its projections: per head
    ``y_t = phi(q_t) S_t / (phi(q_t) z_t + 1e-6)`` with ``S_t = sum_{s<=t} phi(k_s)^T v_s``
    and ``z_t = sum_{s<=t} phi(k_s)`` (a feature map that can be negative, ``"identity"``,
    takes a LayerNorm of each head's output instead of the denominator).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      feature_map: One of `memnas.searchspace.mixers.linear_attention.FEATURE_MAPS`.
    """

    COMBINE = SLOTS
    SLOTS = ("q", "k", "v")
    num_heads: int = 1
    feature_map: str = "elu+1"

    def build(self, d_model: int) -> nn.Module:
        self.check(d_model)
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"LinearAttn: feature_map must be one of {sorted(FEATURE_MAPS)}, "
                             f"got {self.feature_map!r}")
        return LinearAttnModule(self.num_heads, self.feature_map)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        d_head = d_model // self.num_heads
        return self.num_heads * d_head * (d_head + int(FEATURE_MAPS[self.feature_map][1]))

    def label(self) -> str:
        return f"linattn(h={self.num_heads},{self.feature_map})"

    @classmethod
    def space(cls) -> Any:
        return cls(num_heads=pg.oneof(list(HEADS)))


class Attention(CellOp):
    """Causal softmax attention of its ``q, k, v`` inputs (scale ``d_head ** -0.5``).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      window: Positions each query sees, itself included; None: all earlier ones.
    """

    COMBINE = SLOTS
    SLOTS = ("q", "k", "v")
    num_heads: int = 1
    window: int | None = None

    def build(self, d_model: int) -> nn.Module:
        self.check(d_model)
        if self.window is not None and self.window < 1:
            raise ValueError(f"Attention: window must be None or >= 1, got {self.window!r}")
        return AttentionModule(self.num_heads, self.window)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The KV cache: keys and values of the last ``min(window, max_len)`` tokens."""
        return 2 * d_model * (max_len if self.window is None else min(self.window, max_len))

    def label(self) -> str:
        return f"attn(h={self.num_heads})" + ("" if self.window is None else f",w={self.window}")

    @classmethod
    def space(cls) -> Any:
        return cls(num_heads=pg.oneof(list(HEADS)))


class DecayedScan(CellOp):
    """Gated linear attention (GLA, Yang et al. 2024) of its ``gate, q, k, v`` inputs.

    Per head ``S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T``, ``o_t = S_t^T q_t / sqrt(d_head)``
    (`memnas.ops.gla`), with GLA's decay ``gk_t = logsigmoid(W_up W_down gate_t + b) / 16``
    (rank 16, its parameters are the node's) and, with ``norm``, GLA's per-head RMS
    norm of the output with a learned gain.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      norm: Normalise each head's output.
    """

    COMBINE = SLOTS
    SLOTS = ("gate", "q", "k", "v")
    num_heads: int = 1
    norm: bool = True

    def build(self, d_model: int) -> nn.Module:
        self.check(d_model)
        return DecayedScanModule(d_model, self.num_heads, self.norm)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        return d_model * d_model // self.num_heads

    def label(self) -> str:
        return f"gla(h={self.num_heads}{'' if self.norm else ',nonorm'})"

    @classmethod
    def space(cls) -> Any:
        return cls(num_heads=pg.oneof(list(HEADS)))


class DeltaScan(CellOp):
    """The (gated) delta rule (Yang et al. 2024, 2025) of its ``gate, q, k, v`` inputs.

    Per head, with ``q, k`` L2-normalised, ``beta_t = sigmoid(w_b . gate_t)`` and, when
    ``gated``, Mamba2's decay ``g_t = -exp(A_log) softplus(w_a . gate_t + dt_bias)``:
    ``S_t = exp(g_t) S_{t-1} + beta_t (v_t - exp(g_t) S_{t-1} k_t) k_t^T``,
    ``o_t = S_t q_t / sqrt(d_head)`` (`memnas.ops.gated_delta_rule`, or
    `memnas.ops.delta_rule` without the decay); with ``norm``, Gated DeltaNet's per-head
    RMS norm of the output with a learned gain.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      gated: Decay the state (Gated DeltaNet) or not (DeltaNet).
      norm: Normalise each head's output.
    """

    COMBINE = SLOTS
    SLOTS = ("gate", "q", "k", "v")
    num_heads: int = 1
    gated: bool = True
    norm: bool = True

    def build(self, d_model: int) -> nn.Module:
        self.check(d_model)
        return DeltaScanModule(d_model, self.num_heads, self.gated, self.norm)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        return d_model * d_model // self.num_heads

    def label(self) -> str:
        return f"{'gdelta' if self.gated else 'delta'}(h={self.num_heads}" \
               f"{'' if self.norm else ',nonorm'})"

    @classmethod
    def space(cls) -> Any:
        return cls(num_heads=pg.oneof(list(HEADS)), gated=pg.oneof([True, False]))


def default_ops() -> list[Any]:
    """The primitives of `memnas.searchspace.cell_space`, each with its own decisions."""
    ops = (Linear, Gate, Product, Sum, Conv, Norm, LinearAttn, DecayedScan, DeltaScan, Attention)
    return [op.space() for op in ops]
