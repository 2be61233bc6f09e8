"""`DynamicTrainEvaluator`: trains a `DynamicSparse` MLP and measures the FLOPs it spends."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from memnas.errors import ConfigError
from memnas.evaluators.costs import count_params
from memnas.evaluators.digits import Digits
from memnas.measurement import Context, Measurement
from memnas.searchspace.dynamic_sparse import DynamicMLPModule, DynamicSparse
from memnas.searchspace.sparse import MLP


@dataclasses.dataclass(frozen=True)
class DynamicTrainEvaluator:
    """Trains a dynamic-pruning classifier on digits (or MNIST) as FTWT does, and measures it.

    The candidate is a `DynamicSparse` (an `MLP` is its dense form, keep 1.0). Each step
    minimises ``cross_entropy + predictor_weight * predictor_loss`` with Adam: the task
    loss through the network gated by the heads' predicted masks (what evaluation
    computes), the heads' binary cross-entropy against the top-k of their layers' own
    activations (self-supervised, the heads' inputs detached). The first
    ``teacher_steps`` gate with the true top-k masks instead, while the heads learn.
    Minibatches follow one permutation of the training set per epoch, seeded by
    ``ctx.seed``, which also seeds the initial weights.

    Evaluation runs `DynamicMLPModule.sparse_forward`: only the predicted units are
    computed. ``flops_spent`` is what torch's flop counter counts on that pass over the
    validation set, per example (the gathered rows and columns, the heads included);
    ``flops_dense`` what it counts on the parent's dense pass; ``flops_saved`` is
    ``1 - flops_spent / flops_dense``. Both equal `DynamicSparse.flops`, which the
    ``costs(candidate)`` hook answers before training.

    Returns metrics ``accuracy`` (validation), ``test_accuracy``, ``dense_accuracy``
    (validation, every unit computed: what the pruning costs in accuracy) and
    ``mask_recall`` (validation: the fraction of each pruned layer's true top-k units
    its head picked); costs ``flops_spent``, ``flops_dense``, ``flops_saved`` (measured),
    ``flops_layers`` and ``flops_heads`` (their split, from `DynamicSparse.flops`),
    ``params`` (heads included) and ``head_params``; the curve (``loss``,
    ``predictor_loss``, ``val_accuracy``).

    Attributes:
      data: The data source.
      steps: Training steps.
      batch_size: Examples per step.
      lr: Adam learning rate.
      predictor_weight: Weight of the heads' loss beside the task loss.
      teacher_steps: Steps gated by the true top-k masks before the predicted ones.
      report_every: Steps between curve points.
    """

    data: Digits = Digits()
    steps: int = 500
    batch_size: int = 60
    lr: float = 1.2e-3
    predictor_weight: float = 1.0
    teacher_steps: int = 0
    report_every: int = 50

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains and measures ``candidate``; see the class docstring."""
        ctx = ctx if ctx is not None else Context()
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(ctx.num_cpus)))
        try:
            return self._run(_spec(candidate), ctx)
        finally:
            torch.set_num_threads(previous)

    def costs(self, candidate: Any) -> dict[str, float]:
        """The FLOPs and parameter costs of ``candidate``, known before training.

        Raises:
          ConfigError: the candidate is neither `DynamicSparse` nor `MLP`.
        """
        spec = _spec(candidate)
        with torch.random.fork_rng(devices=[]):
            model = spec.build()
        return {**spec.flops(), **_param_costs(model)}

    def _run(self, spec: DynamicSparse, ctx: Context) -> Measurement:
        split = self.data.load()
        if spec.parent.in_features != split.in_features:
            raise ConfigError(f"MLP in_features={spec.parent.in_features} does not match the "
                              f"data's {split.in_features} features; pass MLP(in_features="
                              f"{split.in_features}, ...)")
        torch.manual_seed(ctx.seed)
        model = spec.build()
        x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
        per_epoch = max(1, len(x) // self.batch_size)
        rng = np.random.default_rng(ctx.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        curve: list[dict[str, Any]] = []
        order: np.ndarray = np.arange(len(x))
        window, head_window, count = 0.0, 0.0, 0
        model.train()
        for step in range(self.steps):
            epoch_step = step % per_epoch
            if epoch_step == 0:
                order = rng.permutation(len(x))
            idx = torch.from_numpy(order[epoch_step * self.batch_size:
                                         (epoch_step + 1) * self.batch_size])
            out = model.masked_forward(x[idx], "target" if step < self.teacher_steps
                                       else "predicted")
            task = F.cross_entropy(out.logits, y[idx])
            loss = task + self.predictor_weight * out.predictor_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            window, head_window, count = (window + task.item(),
                                          head_window + out.predictor_loss.item(), count + 1)
            if (step + 1) % self.report_every == 0 or step + 1 == self.steps:
                val = _accuracy(model, split.x_val, split.y_val)
                points = {"loss": window / count, "predictor_loss": head_window / count,
                          "val_accuracy": val}
                ctx.report(step + 1, **points)
                curve.extend({"step": step + 1, "name": k, "value": v} for k, v in points.items())
                window, head_window, count = 0.0, 0.0, 0
        flops = measure_flops(model, torch.from_numpy(split.x_val))
        with torch.no_grad():
            model.eval()
            xv = torch.from_numpy(split.x_val)
            dense = float((model.dense_forward(xv).argmax(-1).numpy() == split.y_val).mean())
            recall = float(model.masked_forward(xv).recall)
        metrics = {"accuracy": _accuracy(model, split.x_val, split.y_val),
                   "test_accuracy": _accuracy(model, split.x_test, split.y_test),
                   "dense_accuracy": dense, "mask_recall": recall}
        split = {k: spec.flops()[k] for k in ("flops_layers", "flops_heads")}
        costs = {**flops, **split, **_param_costs(model)}
        return Measurement(metrics=metrics, costs=costs, curve=curve)


@torch.no_grad()
def measure_flops(model: DynamicMLPModule, x: torch.Tensor) -> dict[str, float]:
    """Per-example FLOPs torch's flop counter counts on the sparse and on the dense pass.

    Returns:
      ``flops_spent`` (`DynamicMLPModule.sparse_forward`: only the predicted units),
      ``flops_dense`` (`DynamicMLPModule.dense_forward`: the parent) and ``flops_saved``.
    """
    with FlopCounterMode(display=False) as sparse:
        model.sparse_forward(x)
    with FlopCounterMode(display=False) as dense:
        model.dense_forward(x)
    spent, full = sparse.get_total_flops() / len(x), dense.get_total_flops() / len(x)
    return {"flops_spent": float(spent), "flops_dense": float(full),
            "flops_saved": 1.0 - spent / full}


def _spec(candidate: Any) -> DynamicSparse:
    if isinstance(candidate, DynamicSparse):
        return candidate
    if isinstance(candidate, MLP):
        return DynamicSparse(parent=candidate, keep=1.0)
    raise ConfigError(f"DynamicTrainEvaluator trains a DynamicSparse or an MLP, got "
                      f"{type(candidate).__name__}: {candidate!r:.100}")


def _param_costs(model: DynamicMLPModule) -> dict[str, float]:
    return {"params": float(count_params(model)), "head_params": float(count_params(model.heads))}


@torch.no_grad()
def _accuracy(model: DynamicMLPModule, x: np.ndarray, y: np.ndarray) -> float:
    was_training = model.training
    model.eval()
    try:
        return float((model.sparse_forward(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())
    finally:
        model.train(was_training)
