"""Modular arithmetic `(a op b) mod p` for grokking: the task, an MLP spec and its trainer."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import numpy as np
import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.errors import ConfigError
from memnas.measurement import Context, Measurement
from memnas.evaluators.sparse_training import initial_masks, mask_costs
from memnas.searchspace.sparse import Masks, SparseNet, apply_masks, full_masks, prunable

OPERATIONS = ("+", "-", "*", "x", "/")
"""Operations of `ModularArithmetic`: ``"x"`` is ``"*"``; ``"/"`` multiplies by the inverse."""

State = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class ModularSplit:
    """Operand pairs ``(n, 2)`` int64 and answers ``(n,)`` int64, for training and held out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModularArithmetic:
    """The task of Power et al. (2022): ``c = (a op b) mod p`` for every pair of operands.

    All ``p * p`` pairs (``p * (p - 1)`` for ``"/"``, whose ``b`` is never 0) are
    shuffled by ``seed``; the first ``train_fraction`` of them train, the rest are held
    out. The split depends on the fields only.

    Attributes:
      p: The modulus (97 by default; prime for ``"/"``).
      op: One of `OPERATIONS`.
      train_fraction: Share of the pairs trained on, in (0, 1).
      seed: Seed of the shuffle.
    """

    p: int = 97
    op: str = "+"
    train_fraction: float = 0.4
    seed: int = 0

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every operand pair ``(a, b)`` in row-major order and its answer.

        Raises:
          ConfigError: an unknown op, ``p < 2``, or ``"/"`` with ``p`` not prime.
        """
        if self.op not in OPERATIONS or self.p < 2:
            raise ConfigError(f"ModularArithmetic: op must be one of {list(OPERATIONS)} and "
                              f"p at least 2, got op={self.op!r}, p={self.p}")
        if self.op == "/" and any(self.p % k == 0 for k in range(2, int(self.p ** 0.5) + 1)):
            raise ConfigError(f"ModularArithmetic: '/' needs a prime p, got {self.p}")
        a, b = (v.ravel() for v in np.meshgrid(np.arange(self.p), np.arange(self.p),
                                               indexing="ij"))
        if self.op == "/":
            a, b = a[b != 0], b[b != 0]
        p = self.p
        inverse = np.array([pow(int(v), p - 2, p) for v in b]) if self.op == "/" else b
        answer = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "/": a * inverse}[self.op] % p
        return np.stack([a, b], axis=1).astype(np.int64), answer.astype(np.int64)

    def split(self) -> ModularSplit:
        """The training and held-out pairs (cached per task); raises `ConfigError` as
        `pairs` does, or for a ``train_fraction`` that leaves either part empty."""
        return _split(self)


@functools.lru_cache(maxsize=8)
def _split(task: ModularArithmetic) -> ModularSplit:
    x, y = task.pairs()
    n = int(round(task.train_fraction * len(x)))
    if not 0 < n < len(x):
        raise ConfigError(f"ModularArithmetic: train_fraction={task.train_fraction} leaves "
                          f"{n} of {len(x)} pairs for training; expected a fraction in (0, 1)")
    order = np.random.default_rng(task.seed).permutation(len(x))
    train, held = order[:n], order[n:]
    return ModularSplit(x[train], y[train], x[held], y[held])


class ModularMLP(pg.Object):
    """Spec of the grokking MLP: embeddings of ``a`` and ``b`` concatenated, one ReLU layer.

    ``(B, 2)`` operand pairs -> ``(B, p)`` logits. The embedding table is an
    ``nn.Linear(p, embed, bias=False)`` read by index (its weight's column ``a`` is
    ``a``'s embedding), so `memnas.searchspace.sparse.prunable` sees all three layers
    (``embed``, ``hidden``, ``out``; ``out`` is the output layer) and masks apply to the
    embeddings too.

    Attributes:
      p: Vocabulary (the modulus) and number of classes.
      embed: Embedding width.
      hidden: Hidden width.
    """

    p: int = 97
    embed: int = 128
    hidden: int = 64

    def build(self) -> nn.Module:
        """A fresh `ModularMLPModule` (PyTorch's default Linear init); ValueError for a
        width below 1 or ``p`` below 2."""
        if self.p < 2 or self.embed < 1 or self.hidden < 1:
            raise ValueError(f"ModularMLP needs p >= 2 and positive widths, got p={self.p}, "
                             f"embed={self.embed}, hidden={self.hidden}")
        return ModularMLPModule(self.p, self.embed, self.hidden)

    def summary(self) -> str:
        """``ModularMLP p97 2x128-64-97``."""
        return f"ModularMLP p{self.p} 2x{self.embed}-{self.hidden}-{self.p}"


class ModularMLPModule(nn.Module):
    """The module of `ModularMLP`."""

    def __init__(self, p: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(p, embed, bias=False)
        self.hidden = nn.Linear(2 * embed, hidden)
        self.out = nn.Linear(hidden, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``out(relu(hidden([E[a], E[b]])))`` for pairs ``x`` (B, 2), computed as
        ``hidden``'s two halves applied to the embedding table once (p columns, not B rows)
        and indexed: the same function, about 3x faster for full batches on a CPU."""
        d = self.embed.out_features
        w, table = self.hidden.weight, self.embed.weight  # (hidden, 2d), (d, p)
        pre = (w[:, :d] @ table).t()[x[:, 0]] + (w[:, d:] @ table).t()[x[:, 1]]
        return self.out(torch.relu(pre + self.hidden.bias))


@dataclasses.dataclass
class GrokRun:
    """One training run: final accuracies, the step the target was first met (None: never),
    the steps trained, final and rewind weights, and the curve."""

    train_accuracy: float
    heldout_accuracy: float
    heldout_loss: float
    steps_to_target: int | None
    steps_run: int
    final: State
    rewind: State | None
    curve: list[dict[str, Any]]


def train_modular(model: nn.Module, masks: Masks, split: ModularSplit, steps: int,
                  lr: float = 3e-3, weight_decay: float = 1.0,
                  betas: tuple[float, float] = (0.9, 0.98), batch_size: int | None = None,
                  data_seed: int = 0, start_step: int = 0, rewind_step: int | None = None,
                  report_every: int = 50, report: Callable[..., None] | None = None,
                  target: float = 0.95, steps_after_target: int | None = None,
                  device: str = "cpu") -> GrokRun:
    """Trains ``model`` with AdamW from ``start_step`` up to ``steps``, masks kept every step.

    Pruned entries are zeroed before the first step, their gradients are zeroed before
    every step (so AdamW's moments stay zero there) and the masks are reapplied after it.
    Every ``report_every`` steps the training and held-out sets are scored: curve points
    ``loss`` (mean training loss since the last point), ``train_accuracy``,
    ``heldout_accuracy``. The first such step with held-out accuracy >= ``target`` is
    ``steps_to_target``.

    Args:
      model: Maps ``(B, 2)`` pairs to ``(B, p)`` logits.
      masks: Parameter name -> bool mask (True: kept).
      split: The data.
      steps: Last step (exclusive): the step cap.
      lr, weight_decay, betas: AdamW's (constant learning rate, decoupled decay).
      batch_size: None: full batch; else minibatches in one fixed order per
        ``data_seed`` (a fresh permutation each epoch, indexed by step).
      data_seed: Seed of the minibatch order.
      start_step: First step (late rewinding resumes there).
      rewind_step: Keep a copy of the weights as they were at this step.
      report_every: Steps between curve points.
      report: Called as ``report(step, **values)`` for each curve point.
      target: Held-out accuracy whose first step is ``steps_to_target``.
      steps_after_target: Stop this many steps after the target is met (None: never).
      device: Torch device.

    Raises:
      ValueError: ``start_step`` outside ``[0, steps)``.
    """
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step must lie in [0, steps={steps}), got {start_step}")
    model = model.to(device)
    masks = {n: m.to(device) for n, m in masks.items()}
    params = dict(model.named_parameters())
    apply_masks(model, masks)
    x, y, xh, yh = (torch.from_numpy(a).to(device) for a in dataclasses.astuple(split))
    full = batch_size is None or batch_size >= len(x)
    per_epoch = 1 if full else len(x) // batch_size
    rng = np.random.default_rng(data_seed)
    orders = [] if full else [rng.permutation(len(x)) for _ in range((steps - 1) // per_epoch + 1)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  betas=betas)
    rewind = _snapshot(model) if rewind_step == start_step else None
    curve: list[dict[str, Any]] = []
    hit, window, count, step = None, 0.0, 0, start_step
    model.train()
    for step in range(start_step, steps):
        if full:
            xb, yb = x, y
        else:
            epoch, i = divmod(step, per_epoch)
            idx = torch.from_numpy(orders[epoch][i * batch_size:(i + 1) * batch_size]).to(device)
            xb, yb = x[idx], y[idx]
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        for n, m in masks.items():
            params[n].grad.mul_(m)
        optimizer.step()
        apply_masks(model, masks)
        window, count = window + loss.item(), count + 1
        if rewind_step is not None and step + 1 == rewind_step:
            rewind = _snapshot(model)
        if (step + 1) % report_every == 0 or step + 1 == steps:
            (train_acc, _), (held_acc, _) = _score(model, x, y), _score(model, xh, yh)
            points = {"loss": window / count, "train_accuracy": train_acc,
                      "heldout_accuracy": held_acc}
            curve.extend({"step": step + 1, "name": k, "value": v} for k, v in points.items())
            if report is not None:
                report(step + 1, **points)
            window, count = 0.0, 0
            if hit is None and held_acc >= target:
                hit = step + 1
            if hit is not None and steps_after_target is not None \
                    and step + 1 >= hit + steps_after_target:
                break
    (train_acc, _), (held_acc, held_loss) = _score(model, x, y), _score(model, xh, yh)
    return GrokRun(train_acc, held_acc, held_loss, hit, step + 1 - start_step,
                   _snapshot(model), rewind, curve)


@dataclasses.dataclass(frozen=True)
class ModularTrainEvaluator:
    """Trains a (sparse) `ModularMLP` on `ModularArithmetic` until it groks, and measures it.

    The candidate is a `ModularMLP` or a `SparseNet` of one (its masks chosen on the
    fresh build). Like `memnas.evaluators.sparse_training.SparseTrainEvaluator`, an
    algorithm (`LotteryTicketIMP`) steers a run through ``ctx.artifact`` (all keys
    optional): ``masks``, rewind ``weights``, ``start_step``, ``rewind_step``,
    ``init_seed`` (default ``ctx.seed``), ``data_seed`` (default ``ctx.seed``; only
    minibatches use it) and ``return_weights``; it then gets ``{"masks", "prunable",
    "final", "rewind"}`` (numpy arrays) back as the trial's artifact.

    Metrics: ``accuracy`` (held-out accuracy at the end), ``train_accuracy``,
    ``heldout_loss``, ``reached_target`` (1 when held-out accuracy met ``target``) and
    ``steps_to_target``: the first curve step where it did or, when it never did, the
    last step trained (a lower bound; ``reached_target`` is 0 then). Costs: ``remaining``
    (kept fraction of all prunable weights), ``sparsity`` (removed fraction of the
    prunable weights but the output layer's), ``weights`` (kept prunable weights),
    ``params`` (nonzero parameters) and ``steps`` (steps trained). The curve holds
    ``loss``, ``train_accuracy`` and ``heldout_accuracy`` every ``report_every`` steps.
    ``ctx.budget`` and multi-fidelity checkpoints are not read.

    With the defaults (p = 97, "+", 40% trained) a dense `ModularMLP` fits the training
    pairs within ~300 steps and groks thousands of steps later (``memnas bench grokking``).

    Attributes:
      task: The modular-arithmetic task.
      steps: Step cap.
      lr, weight_decay, betas: AdamW's (grokking needs the weight decay).
      batch_size: None: full batch.
      report_every: Steps between curve points (the resolution of ``steps_to_target``).
      target: Held-out accuracy for ``steps_to_target``.
      steps_after_target: Stop this many steps after the target is met (None: never).
      return_weights: Always return the weights artifact.
      init_seed: Initialise every candidate from this seed; None: ``ctx.seed``.
      data_seed: Minibatch order; None: ``ctx.seed``.
    """

    task: ModularArithmetic = ModularArithmetic()
    steps: int = 5000
    lr: float = 3e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    batch_size: int | None = None
    report_every: int = 50
    target: float = 0.95
    steps_after_target: int | None = None
    return_weights: bool = False
    init_seed: int | None = None
    data_seed: int | None = None

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains and measures ``candidate``; see the class docstring."""
        ctx = ctx if ctx is not None else Context()
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(ctx.num_cpus)))
        try:
            return self._run(candidate, ctx, ctx.artifact or {})
        finally:
            torch.set_num_threads(previous)

    def _run(self, candidate: Any, ctx: Context, art: Mapping[str, Any]) -> Measurement:
        parent = self._parent(candidate)
        split = self.task.split()
        init_seed = int(art.get("init_seed", _first(self.init_seed, ctx.seed)))
        data_seed = int(art.get("data_seed", _first(self.data_seed, ctx.seed)))
        torch.manual_seed(init_seed)
        model = parent.build()
        masks = initial_masks(model, candidate, art, init_seed)
        batch = None if self.batch_size is None else \
            max(1, int(self.batch_size * ctx.batch_scale))
        rewind_step, start = art.get("rewind_step"), int(art.get("start_step", 0))
        run = train_modular(
            model, masks, split, self.steps, self.lr, self.weight_decay, tuple(self.betas),
            batch, data_seed, start_step=start,
            rewind_step=None if rewind_step is None else int(rewind_step),
            report_every=self.report_every, report=ctx.report, target=self.target,
            steps_after_target=self.steps_after_target, device=ctx.device)
        hit = run.steps_to_target
        m = Measurement(
            metrics={"accuracy": run.heldout_accuracy, "train_accuracy": run.train_accuracy,
                     "heldout_loss": run.heldout_loss, "reached_target": float(hit is not None),
                     "steps_to_target": float(hit if hit is not None else start + run.steps_run)},
            costs={**mask_costs(model, masks), "steps": float(run.steps_run)},
            curve=list(run.curve))
        if self.return_weights or art.get("return_weights"):
            m.artifact = {"masks": _numpy(masks), "prunable": prunable(model),
                          "final": _numpy(run.final), "rewind": _numpy(run.rewind)}
        return m

    def costs(self, candidate: Any) -> dict[str, float]:
        """``remaining``, ``sparsity``, ``weights`` and ``params`` of the candidate's own
        masks on a fresh build (one build on the CPU, no data, no training)."""
        parent = self._parent(candidate)
        seed = _first(self.init_seed, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = parent.build()
            masks = candidate.masks(model, torch.Generator().manual_seed(seed + 1)) \
                if isinstance(candidate, SparseNet) else full_masks(model)
        apply_masks(model, masks)
        return mask_costs(model, masks)

    def _parent(self, candidate: Any) -> Any:
        parent = candidate.parent if isinstance(candidate, SparseNet) else candidate
        p = getattr(parent, "p", None)
        if p is not None and p != self.task.p:
            raise ConfigError(f"{type(parent).__name__} p={p} does not match the task's "
                              f"p={self.task.p}; pass {type(parent).__name__}(p={self.task.p})")
        return parent


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def _numpy(state: Mapping[str, torch.Tensor] | None) -> dict[str, np.ndarray] | None:
    return None if state is None else {k: v.detach().cpu().numpy() for k, v in state.items()}


def _snapshot(model: nn.Module) -> State:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    model.train()
    return float((logits.argmax(-1) == y).float().mean()), float(F.cross_entropy(logits, y))
