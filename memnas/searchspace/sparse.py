"""Sparse subnetworks of a dense parent: masked MLPs and memory models, pruning, the node space."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pyglove as pg
import torch
from torch import nn

CRITERIA = ("magnitude", "random")
SCOPES = ("layer", "global")
INITS = ("original", "reinit")

Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor of its shape (True: kept)


class MLP(pg.Object):
    """Spec of a fully connected ReLU network; the default is LeNet-300-100 (784-300-100-10).

    Attributes:
      in_features: Input width: 784 (28 x 28 MNIST images, LeNet-300-100's input) by
        default; 64 for scikit-learn's 8 x 8 digits.
      hidden: Widths of the hidden layers.
      out_features: Number of classes.
    """

    in_features: int = 784
    hidden: list[int] = [300, 100]
    out_features: int = 10

    def build(self) -> nn.Module:
        """Returns a freshly initialised `MLPModule` (PyTorch's default Linear init).

        Raises:
          ValueError: a width is not a positive integer.
        """
        widths = [self.in_features, *self.hidden, self.out_features]
        if any(w < 1 for w in widths):
            raise ValueError(f"MLP widths must be positive, got {widths}")
        return MLPModule(widths)

    def summary(self) -> str:
        """``MLP 64-300-100-10``."""
        return "MLP " + "-".join(str(w) for w in [self.in_features, *self.hidden,
                                                  self.out_features])


class MLPModule(nn.Module):
    """Linear layers with ReLU between them: ``(B, in) -> (B, out)`` logits."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class SparseNet(pg.Object):
    """Spec of a sparse subnetwork of ``parent``: its built module carries pruning masks.

    ``build()`` builds the parent, chooses masks on its freshly initialised weights
    (``magnitude`` keeps the largest ``|w|``, i.e. pruning at initialisation; ``random``
    keeps a uniformly random subset), zeroes the pruned weights and masks their
    gradients, so any optimiser without weight noise keeps them exactly zero. A trainer
    that knows about masks (`memnas.evaluators.sparse_training`) reapplies them after
    every step and can instead take masks from an algorithm (IMP) through the artifact
    channel.

    Attributes:
      parent: The dense parent spec (`MLP`, `SequenceModel`, ...) with ``build()``.
      sparsity: Fraction of the prunable weights removed: one number, or one per
        prunable layer (``scope="layer"`` only; the output layer's entry then applies
        as given).
      criterion: ``"magnitude"`` or ``"random"``.
      scope: ``"layer"`` (each layer loses ``sparsity`` of its weights) or ``"global"``
        (the smallest weights across all prunable layers go, Lee et al. / OpenLTH).
      units: The node space (Farahani 2024, "Random Search as a Baseline for Sparse
        Neural Network Architecture Search"): for each hidden layer of an `MLP`, the
        indices of the unit groups that survive (None: all). A dropped unit loses its
        incoming row, bias and outgoing column.
      groups: Hidden units per layer are split into this many equal groups for ``units``.
      output_rate: With one ``sparsity`` number, the output layer is pruned at
        ``output_rate * sparsity``: 0 leaves it
        dense (the default), 0.5 is OpenLTH's half rate for output layers.
      init: A label for lottery-ticket controls: ``"original"`` or ``"reinit"`` (the
        trainer then draws fresh weights for the mask; see `LotteryTicketIMP`).
    """

    parent: Any
    sparsity: Any = 0.0
    criterion: str = "magnitude"
    scope: str = "layer"
    units: Any = None
    groups: int = 10
    output_rate: float = 0.0
    init: str = "original"

    def build(self) -> nn.Module:
        """The parent's module with this spec's masks applied (``module.masks``)."""
        module = self.parent.build()
        attach_masks(module, self.masks(module))
        return module

    def masks(self, module: nn.Module, generator: torch.Generator | None = None) -> Masks:
        """Masks for ``module`` (the built parent) from its current weights.

        Raises:
          ValueError: an unknown criterion or scope, a bad sparsity, or ``units`` on
            a parent that is not an `MLP`.
        """
        _check_choice("criterion", self.criterion, CRITERIA)
        _check_choice("scope", self.scope, SCOPES)
        _check_choice("init", self.init, INITS)
        names = prunable(module)
        masks = full_masks(module, names)
        if self.units is not None:
            masks = node_masks(module, self.units, self.groups, masks)
        weights = dict(module.named_parameters())
        sparsity = self.sparsity
        if isinstance(sparsity, (list, tuple)):
            if self.scope != "layer" or len(sparsity) != len(names):
                raise ValueError(
                    f"SparseNet: a per-layer sparsity needs scope='layer' and one value per "
                    f"prunable layer ({len(names)}: {names}), got {list(sparsity)!r} with "
                    f"scope={self.scope!r}")
            fraction: Any = dict(zip(names, (float(s) for s in sparsity)))
            output_rate = 1.0  # the output layer's own entry applies
        else:
            fraction, output_rate = float(sparsity), self.output_rate
        return prune(weights, masks, fraction, scope=self.scope, criterion=self.criterion,
                     output=names[-1], output_rate=output_rate, generator=generator)

    def summary(self) -> str:
        """A one-line description for tables."""
        parent = self.parent.summary() if hasattr(self.parent, "summary") else \
            type(self.parent).__name__
        s = self.sparsity
        amount = "/".join(f"{v:.2f}" for v in s) if isinstance(s, (list, tuple)) else f"{s:.3f}"
        units = "" if self.units is None else \
            f", units {[len(u) for u in self.units]}/{self.groups}"
        return f"{parent}, sparsity {amount} ({self.criterion}, {self.scope}, {self.init}{units})"


# -- masks -------------------------------------------------------------------------------
def prunable(module: nn.Module) -> list[str]:
    """Names of the prunable weights: those of every ``nn.Linear``, in module order.

    The last one is taken as the output layer. A Linear weight shared with an
    embedding (tied output head) is left out.
    """
    embedded = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    names = [f"{name}.weight" if name else "weight" for name, m in module.named_modules()
             if isinstance(m, nn.Linear) and id(m.weight) not in embedded]
    if not names:
        raise ValueError(f"{type(module).__name__} has no nn.Linear layer to prune")
    return names


def full_masks(module: nn.Module, names: Sequence[str] | None = None) -> Masks:
    """All-True masks for the named (default: prunable) weights of ``module``."""
    params = dict(module.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names or prunable(module)}


def prune(weights: Mapping[str, torch.Tensor], masks: Masks, fraction: float | Mapping[str, float],
          scope: str = "layer", criterion: str = "magnitude", output: str | None = None,
          output_rate: float = 0.0, generator: torch.Generator | None = None) -> Masks:
    """Removes ``fraction`` of the weights each mask still keeps; returns new masks.

    Exactly ``round(fraction * kept)`` weights go per layer (``scope="layer"``) or across
    all layers but the output (``"global"``); the output layer loses
    ``round(output_rate * fraction * kept)``. Ties break by position, so the result is
    deterministic. Masks of biases (node space) are carried over unchanged.

    Args:
      weights: Parameter name -> tensor (trained weights for magnitude pruning).
      masks: Current masks; the names of 2-D entries are the prunable weights.
      fraction: Fraction to remove, one number or one per weight name.
      scope: ``"layer"`` or ``"global"``.
      criterion: ``"magnitude"`` (smallest ``|w|`` go) or ``"random"``.
      output: Name of the output layer (default: the last prunable name).
      output_rate: Multiplier of ``fraction`` for the output layer.
      generator: Torch generator for ``"random"``.

    Raises:
      ValueError: a fraction outside [0, 1), unknown scope or criterion.
    """
    _check_choice("scope", scope, SCOPES)
    _check_choice("criterion", criterion, CRITERIA)
    names = [n for n, m in masks.items() if m.ndim >= 2]
    output = output if output is not None else names[-1]
    rates = {n: float(fraction[n]) if isinstance(fraction, Mapping) else float(fraction)
             for n in names}
    for n, r in rates.items():
        if not 0.0 <= r < 1.0:
            raise ValueError(f"sparsity of {n!r} must be in [0, 1), got {r!r}")
    if output in rates:
        rates[output] *= output_rate
    new = {n: m.clone() for n, m in masks.items()}

    def scores(n: str) -> torch.Tensor:
        if criterion == "magnitude":
            s = weights[n].detach().abs().flatten().to(torch.float64).cpu()
        else:
            s = torch.rand(masks[n].numel(), generator=generator, dtype=torch.float64)
        return s.masked_fill(~masks[n].flatten().cpu(), float("inf"))

    def drop(group: list[str], rate: float) -> None:
        kept = sum(int(masks[n].sum()) for n in group)
        k = int(round(rate * kept))
        if k == 0:
            return
        s = torch.cat([scores(n) for n in group])
        gone = torch.argsort(s, stable=True)[:k]
        flat = torch.cat([new[n].flatten().cpu() for n in group])
        flat[gone] = False
        start = 0
        for n in group:
            size = new[n].numel()
            new[n] = flat[start:start + size].view_as(new[n]).to(new[n].device)
            start += size

    if scope == "layer":
        for n in names:
            drop([n], rates[n])
    else:
        body = [n for n in names if n != output]
        drop(body, rates[body[0]] if body else 0.0)
        if output in names:
            drop([output], rates[output])
    return new


def random_like(masks: Masks, generator: torch.Generator | None = None) -> Masks:
    """Random masks with the same number of kept weights in each layer as ``masks``."""
    out = {}
    for n, m in masks.items():
        if m.ndim < 2:
            out[n] = m.clone()
            continue
        order = torch.randperm(m.numel(), generator=generator)
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[order[:int(m.sum())]] = True
        out[n] = flat.view_as(m).to(m.device)
    return out


def node_masks(module: nn.Module, units: Sequence[Sequence[int]], groups: int,
               masks: Masks | None = None) -> Masks:
    """Masks keeping only the given unit groups of each hidden layer of an `MLPModule`.

    Raises:
      ValueError: the module is not an `MLPModule`, or ``units`` has the wrong length
        or a group index out of range.
    """
    if not isinstance(module, MLPModule):
        raise ValueError(f"the node space needs an MLP parent, got {type(module).__name__}")
    hidden = len(module.layers) - 1
    if len(units) != hidden:
        raise ValueError(f"units needs one list per hidden layer ({hidden}), got {units!r}")
    masks = dict(masks) if masks is not None else full_masks(module)
    for i, keep in enumerate(units):
        width = module.layers[i].out_features
        if any(not 0 <= g < groups for g in keep) or groups > width:
            raise ValueError(f"unit groups of layer {i} must lie in [0, {groups}) with "
                             f"groups <= width {width}, got {list(keep)!r}")
        alive = torch.zeros(width, dtype=torch.bool)
        for g in keep:
            alive[g * width // groups:(g + 1) * width // groups] = True
        rows, cols = f"layers.{i}.weight", f"layers.{i + 1}.weight"
        masks[rows] = masks[rows] & alive[:, None]
        masks[cols] = masks[cols] & alive[None, :]
        masks[f"layers.{i}.bias"] = alive.clone()
    return masks


def apply_masks(module: nn.Module, masks: Masks) -> None:
    """Zeroes the pruned entries of ``module``'s parameters in place."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].device, params[n].dtype))


def attach_masks(module: nn.Module, masks: Masks) -> nn.Module:
    """Applies ``masks`` and keeps pruned gradients at zero; sets ``module.masks``."""
    apply_masks(module, masks)
    params = dict(module.named_parameters())
    for n, m in masks.items():
        keep = m.to(params[n].device, params[n].dtype)
        params[n].register_hook(lambda g, keep=keep: g * keep)
    module.masks = masks
    return module


def remaining(masks: Masks, names: Sequence[str] | None = None) -> float:
    """Fraction of the named (default: all 2-D) masked weights that are kept."""
    names = names if names is not None else [n for n, m in masks.items() if m.ndim >= 2]
    total = sum(masks[n].numel() for n in names)
    return sum(int(masks[n].sum()) for n in names) / max(total, 1)


# -- spaces ------------------------------------------------------------------------------
def sparse_space(parent: Any, sparsity: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                 per_layer: bool = False, criteria: Sequence[str] = CRITERIA,
                 scopes: Sequence[str] = SCOPES) -> SparseNet:
    """Sparse subnetworks of ``parent`` (a spec, or a hyper value such as a memory space).

    Args:
      parent: The dense parent.
      sparsity: Candidate sparsities.
      per_layer: One sparsity decision per prunable layer of an `MLP` parent (then the
        scope is ``"layer"``); else one for the whole network.
      criteria: Candidate pruning criteria.
      scopes: Candidate scopes (ignored with ``per_layer``).
    """
    if per_layer:
        if not isinstance(parent, MLP):
            raise ValueError(f"per_layer sparsity needs an MLP parent, got {type(parent).__name__}")
        layers = len(parent.hidden) + 1
        return SparseNet(parent=parent, sparsity=[pg.oneof(list(sparsity)) for _ in range(layers)],
                         criterion=pg.oneof(list(criteria)), scope="layer")
    return SparseNet(parent=parent, sparsity=pg.oneof(list(sparsity)),
                     criterion=pg.oneof(list(criteria)), scope=pg.oneof(list(scopes)))


def node_space(parent: MLP, keep: int | Sequence[int], groups: int = 10) -> SparseNet:
    """The node space: which ``keep`` of ``groups`` unit groups survive in each hidden layer.

    Weights are kept wherever both ends survive (no further pruning).
    """
    keeps = [keep] * len(parent.hidden) if isinstance(keep, int) else list(keep)
    return SparseNet(parent=parent, units=[pg.manyof(k, list(range(groups)), sorted=True)
                                           for k in keeps], groups=groups)


def sparse_memory_space(sparsity: Sequence[float] = (0.5, 0.8, 0.9), **memory: Any) -> SparseNet:
    """Sparse subnetworks of a small model from `memnas.searchspace.memory_space`.

    Keyword arguments go to ``memory_space`` (defaults: vocabulary 32, length 16,
    one or two layers of width 16 or 32).
    """
    from memnas.searchspace.space import memory_space

    opts = dict(vocab_size=32, max_len=16, max_layers=2, d_model=(16, 32))
    opts.update(memory)
    return sparse_space(memory_space(**opts), sparsity=sparsity)


def _check_choice(what: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"SparseNet: {what} must be one of {list(allowed)}, got {value!r}")
