"""`DynamicSparse`: input-dependent unit pruning of an MLP with FTWT mask-predictor heads."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.sparse import MLP


class DynamicSparse(pg.Object):
    """Spec of an `MLP` that computes, per input, only the hidden units a small head predicts.

    Fire Together Wire Together (Elkerdawy et al., CVPR 2022): each pruned layer gets a
    light decision head that reads the layer's input and predicts which of the layer's
    units (channels) fire for that input. The head is trained self-supervised: its
    target is the top-k of the layer's own activation magnitudes, with a binary
    cross-entropy loss beside the task loss (`memnas.evaluators.dynamic_training`).
    At evaluation only the predicted ``k`` units of each pruned layer are computed (the
    selected rows of the weight matrix, gathered per example), and the next layer reads
    only those ``k`` inputs (the selected columns), so the FLOPs spent are
    ``2 * k_i * k_{i-1}`` per layer plus the heads' (see `DynamicMLPModule.flops`).

    Attributes:
      parent: The dense parent `MLP`.
      keep: Fraction of each hidden layer's units computed per input: one number, or
        one per hidden layer; 1.0 leaves a layer dense (no head).
      head_rank: Width of the low-rank decision head ``in -> head_rank -> units``;
        0 gives a full linear head ``in -> units`` (as costly as the layer itself).
    """

    parent: Any
    keep: Any = 1.0
    head_rank: int = 8

    def kept(self) -> list[int]:
        """Units computed per hidden layer: ``max(1, round(keep * width))``.

        Raises:
          ValueError: the parent is not an `MLP`, a keep ratio outside (0, 1], a
            per-layer list of the wrong length, or a negative ``head_rank``.
        """
        if not isinstance(self.parent, MLP):
            raise ValueError(f"DynamicSparse needs an MLP parent, got "
                             f"{type(self.parent).__name__}")
        widths = list(self.parent.hidden)
        keep = list(self.keep) if isinstance(self.keep, (list, tuple)) else \
            [self.keep] * len(widths)
        if len(keep) != len(widths):
            raise ValueError(f"DynamicSparse: keep needs one ratio per hidden layer "
                             f"({len(widths)}), got {list(keep)!r}")
        if any(not isinstance(r, (int, float)) or not 0.0 < float(r) <= 1.0 for r in keep):
            raise ValueError(f"DynamicSparse: keep ratios must lie in (0, 1], got {list(keep)!r}")
        if self.head_rank < 0:
            raise ValueError(f"DynamicSparse: head_rank must be >= 0, got {self.head_rank!r}")
        return [max(1, int(round(float(r) * w))) for r, w in zip(keep, widths)]

    def build(self) -> "DynamicMLPModule":
        """A freshly initialised `DynamicMLPModule` (PyTorch's default Linear init)."""
        kept = self.kept()
        widths = [self.parent.in_features, *self.parent.hidden, self.parent.out_features]
        if any(w < 1 for w in widths):
            raise ValueError(f"MLP widths must be positive, got {widths}")
        return DynamicMLPModule(widths, kept, self.head_rank)

    def flops(self) -> dict[str, float]:
        """FLOPs per example at evaluation, from the widths alone (see `DynamicMLPModule.flops`)."""
        widths = [self.parent.in_features, *self.parent.hidden, self.parent.out_features]
        return dynamic_flops(widths, self.kept(), self.head_rank)

    def summary(self) -> str:
        """``MLP 64-128-64-10, dynamic keep 0.50/0.25 (head rank 8)``."""
        keep = self.keep if isinstance(self.keep, (list, tuple)) else [self.keep]
        return (f"{self.parent.summary()}, dynamic keep "
                f"{'/'.join(f'{float(r):.2f}' for r in keep)} (head rank {self.head_rank})")


def dynamic_flops(widths: Sequence[int], kept: Sequence[int], head_rank: int
                  ) -> dict[str, float]:
    """Per-example forward FLOPs (2 per multiply-add, torch's convention) of a dynamic MLP.

    Layer ``i`` computes ``k_i`` units from the ``a_{i-1}`` active inputs (``a_0`` the
    input width, ``a_i = k_i``): ``2 k_i a_{i-1}``. A pruned layer's head costs
    ``2 r (a_{i-1} + width_i)`` (rank ``r``) or ``2 width_i a_{i-1}`` (``r = 0``). The
    output layer computes all its units. Biases, ReLU and top-k are not counted.

    Returns:
      ``flops_spent`` (layers and heads), ``flops_layers``, ``flops_heads``,
      ``flops_dense`` (the parent: ``2 * sum(width_{i-1} width_i)``) and
      ``flops_saved`` (``1 - spent / dense``).
    """
    active, layers, heads = widths[0], 0, 0
    for width, k in zip(widths[1:-1], kept):
        if k < width:
            heads += 2 * head_rank * (active + width) if head_rank else 2 * width * active
        layers += 2 * k * active
        active = k
    layers += 2 * widths[-1] * active
    dense = sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    spent = layers + heads
    return {"flops_spent": float(spent), "flops_layers": float(layers),
            "flops_heads": float(heads), "flops_dense": float(dense),
            "flops_saved": 1.0 - spent / dense}


class DynamicOutput(NamedTuple):
    """What `DynamicMLPModule.masked_forward` gives: logits and the heads' training signal.

    Attributes:
      logits: ``(B, classes)``.
      predictor_loss: Mean over pruned layers of the heads' binary cross-entropy against
        the top-k masks of the layers' activations (0 when no layer is pruned).
      recall: Mean over pruned layers of the fraction of the true top-k units the heads
        picked (1 when no layer is pruned).
    """

    logits: torch.Tensor
    predictor_loss: torch.Tensor
    recall: torch.Tensor


class DynamicMLPModule(nn.Module):
    """An MLP whose pruned hidden layers compute only the units their heads pick per input.

    ``forward`` in training mode is `masked_forward` with the predicted masks (every unit
    computed, the unpicked ones zeroed, so the task loss trains the network as it will
    run); in eval mode it is `sparse_forward` (only the picked units computed).
    """

    def __init__(self, widths: Sequence[int], kept: Sequence[int], head_rank: int = 8) -> None:
        super().__init__()
        self.widths, self.kept, self.head_rank = list(widths), list(kept), head_rank
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        heads: dict[str, nn.Module] = {}
        for i, (a, b, k) in enumerate(zip(widths[:-2], widths[1:-1], kept)):
            if k < b:
                heads[str(i)] = nn.Sequential(nn.Linear(a, head_rank, bias=False),
                                              nn.Linear(head_rank, b)) \
                    if head_rank else nn.Linear(a, b)
        self.heads = nn.ModuleDict(heads)

    def flops(self) -> dict[str, float]:
        """Per-example FLOPs of `sparse_forward` and of the dense parent (see `dynamic_flops`)."""
        return dynamic_flops(self.widths, self.kept, self.head_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.masked_forward(x).logits if self.training else self.sparse_forward(x)

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The parent MLP's forward: every unit of every layer, no heads."""
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)

    def masked_forward(self, x: torch.Tensor, gate: str = "predicted") -> DynamicOutput:
        """The reference: all units computed, those outside each layer's mask zeroed.

        Each head reads its layer's input (detached: only its own loss trains it); its
        target is the top-k of the layer's post-ReLU activation magnitudes.

        Args:
          x: ``(B, in_features)``.
          gate: Zero the units outside the ``"predicted"`` masks (what evaluation
            computes) or outside the ``"target"`` ones (the true top-k).

        Raises:
          ValueError: an unknown ``gate``.
        """
        if gate not in ("predicted", "target"):
            raise ValueError(f"gate must be 'predicted' or 'target', got {gate!r}")
        losses, recalls = [], []
        for i, layer in enumerate(self.layers[:-1]):
            h = torch.relu(layer(x))
            head = self.heads[str(i)] if str(i) in self.heads else None
            if head is not None:
                k = self.kept[i]
                target = _top_mask(h.detach().abs(), k)
                scores = head(x.detach())
                predicted = _top_mask(scores.detach(), k)
                losses.append(F.binary_cross_entropy_with_logits(scores, target.float()))
                recalls.append((predicted & target).sum(-1).float().mean() / k)
                h = h * (predicted if gate == "predicted" else target)
            x = h
        zero = x.new_zeros(())
        return DynamicOutput(self.layers[-1](x),
                             torch.stack(losses).mean() if losses else zero,
                             torch.stack(recalls).mean() if recalls else zero + 1.0)

    def sparse_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes only the predicted units: gathered weight rows (and columns) per example.

        Equals ``masked_forward(x).logits`` up to float rounding; torch's flop counter
        counts ``flops()["flops_spent"]`` per example on it.
        """
        values, index = x, None          # active inputs (B, a) and their indices (or all)
        for i, layer in enumerate(self.layers[:-1]):
            out = None
            if str(i) in self.heads:
                scores = self._head_scores(self.heads[str(i)], values, index)
                out = torch.topk(scores, self.kept[i], dim=-1).indices.sort(dim=-1).values
            values = torch.relu(_gathered(layer.weight, layer.bias, values, index, out))
            index = out
        last = self.layers[-1]
        return _gathered(last.weight, last.bias, values, index, None)

    def _head_scores(self, head: nn.Module, values: torch.Tensor,
                     index: torch.Tensor | None) -> torch.Tensor:
        if isinstance(head, nn.Linear):
            return _gathered(head.weight, head.bias, values, index, None)
        down, up = head[0], head[1]
        return up(_gathered(down.weight, None, values, index, None))


def _top_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of each row."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter_(-1, torch.topk(scores, k, dim=-1).indices, True)


def _gathered(weight: torch.Tensor, bias: torch.Tensor | None, values: torch.Tensor,
              index: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
    """``y[b] = W[out[b]][:, index[b]] @ values[b] (+ bias[out[b]])``; None: every row/column.

    Only the gathered block is multiplied: ``2 * |out| * |index|`` FLOPs per example.
    """
    if index is None and out is None:
        y = values @ weight.t()
        return y if bias is None else y + bias
    if index is None:
        block = weight[out]                                    # (B, k, in)
    elif out is None:
        block = weight.t()[index].transpose(1, 2)              # (B, units, a)
    else:
        block = weight[out[:, :, None], index[:, None, :]]     # (B, k, a)
    y = torch.bmm(block, values.unsqueeze(-1)).squeeze(-1)
    if bias is None:
        return y
    return y + (bias if out is None else bias[out])


def dynamic_sparse_space(parent: MLP, keep: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                         head_rank: Sequence[int] = (8,)) -> DynamicSparse:
    """Dynamic-pruning candidates of ``parent``: a keep ratio per hidden layer (a decision).

    Args:
      parent: The dense parent `MLP`.
      keep: Candidate keep ratios, in (0, 1].
      head_rank: Candidate head ranks (one value: no decision).
    """
    if not isinstance(parent, MLP):
        raise ValueError(f"dynamic_sparse_space needs an MLP parent, got {type(parent).__name__}")
    ranks = list(head_rank)
    return DynamicSparse(parent=parent, keep=[pg.oneof(list(keep)) for _ in parent.hidden],
                         head_rank=ranks[0] if len(ranks) == 1 else pg.oneof(ranks))
