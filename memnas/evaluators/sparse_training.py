"""`SparseTrainEvaluator`: trains a masked classifier so pruned weights stay exactly zero."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from memnas.errors import ConfigError
from memnas.evaluators import accel
from memnas.evaluators.costs import measure_latency
from memnas.evaluators.digits import Digits, Split
from memnas.measurement import Context, Measurement
from memnas.searchspace.sparse import MLP, Masks, SparseNet, apply_masks, full_masks, prunable

State = dict[str, torch.Tensor]


@dataclasses.dataclass
class TrainRun:
    """What one masked training run gives: accuracies, final and rewind weights, curve, and
    the costs of its accelerator settings (``compile_s``; ``latency_ms`` on a GPU)."""

    val_accuracy: float
    test_accuracy: float
    val_loss: float
    final: State
    rewind: State | None
    curve: list[dict[str, Any]]
    costs: dict[str, float] = dataclasses.field(default_factory=dict)


def train_masked(model: torch.nn.Module, masks: Masks, split: Split, steps: int,
                 batch_size: int = 60, lr: float = 1.2e-3, data_seed: int = 0,
                 start_step: int = 0, rewind_step: int | None = None, report_every: int = 50,
                 report: Callable[..., None] | None = None, device: str = "cpu",
                 precision: str = "fp32", compile_backend: str | None = None) -> TrainRun:
    """Trains ``model`` with Adam from ``start_step`` to ``steps``, masks reapplied every step.

    Minibatches follow one fixed order per ``data_seed`` (a fresh permutation of the
    training set each epoch), indexed by step, so a run rewound to step k sees the same
    batches from k on as the dense run did. On a GPU the data is pinned and copied once,
    and ``latency_ms`` (CUDA events, `measure_latency`) is timed on ``batch_size``
    validation rows.

    Args:
      model: A module mapping ``(B, d)`` features to ``(B, classes)`` logits.
      masks: Parameter name -> bool mask; pruned entries are zeroed before the first
        step and after every optimiser step.
      split: The data.
      steps: Last step (exclusive).
      batch_size: Examples per step.
      lr: Adam learning rate.
      data_seed: Seed of the minibatch order.
      start_step: First step (late rewinding resumes from the rewind step).
      rewind_step: Keep a copy of the weights as they were at this step.
      report_every: Steps between curve points (train loss, validation accuracy).
      report: Called as ``report(step, **values)`` for each curve point.
      device: Torch device.
      precision: Autocast of the forward pass and loss: ``"fp32"``, ``"bf16"`` or ``"fp16"``
        (with a GradScaler); see `memnas.evaluators.accel`.
      compile_backend: ``torch.compile`` the model with this backend first (cost
        ``compile_s``); None: not compiled.

    Raises:
      ValueError: ``start_step`` outside ``[0, steps)``.
    """
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step must lie in [0, steps={steps}), got {start_step}")
    model = model.to(device)
    net = model if compile_backend is None else accel.compile_model(model, compile_backend)
    masks = {n: m.to(device) for n, m in masks.items()}
    apply_masks(model, masks)
    x, y = (accel.to_device(torch.from_numpy(a), device) for a in (split.x_train, split.y_train))
    per_epoch = max(1, len(x) // batch_size)
    rng = np.random.default_rng(data_seed)
    orders = [rng.permutation(len(x)) for _ in range((steps - 1) // per_epoch + 1)]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = accel.grad_scaler(device, precision)
    clock = accel.CompileClock(device, net is not model)
    rewind = _snapshot(model) if rewind_step == start_step else None
    curve: list[dict[str, Any]] = []
    window, count = 0.0, 0
    model.train()
    for step in range(start_step, steps):
        epoch, i = divmod(step, per_epoch)
        idx = accel.to_device(torch.from_numpy(orders[epoch][i * batch_size:(i + 1) * batch_size]),
                              device)
        with accel.autocast(device, precision):
            loss = F.cross_entropy(net(x[idx]), y[idx])
        accel.optimizer_step(loss, optimizer, model.parameters(), scaler)
        apply_masks(model, masks)
        clock.lap()
        window, count = window + loss.item(), count + 1
        if rewind_step is not None and step + 1 == rewind_step:
            rewind = _snapshot(model)
        if (step + 1) % report_every == 0 or step + 1 == steps:
            val_acc, _ = _score(net, split.x_val, split.y_val, device, precision)
            points = {"loss": window / count, "val_accuracy": val_acc}
            curve.extend({"step": step + 1, "name": k, "value": v} for k, v in points.items())
            if report is not None:
                report(step + 1, **points)
            window, count = 0.0, 0
    val_acc, val_loss = _score(net, split.x_val, split.y_val, device, precision)
    test_acc, _ = _score(net, split.x_test, split.y_test, device, precision)
    costs = clock.costs()
    if torch.device(device).type == "cuda":
        rows = accel.to_device(torch.from_numpy(split.x_val[:batch_size]), device)
        costs["latency_ms"] = measure_latency(net, rows, precision=precision)
    return TrainRun(val_acc, test_acc, val_loss, _snapshot(model), rewind, curve, costs)


@dataclasses.dataclass(frozen=True)
class SparseTrainEvaluator:
    """Trains a (sparse) classifier spec on digits or MNIST and measures it.

    The candidate is a `SparseNet` (masks from its decisions) or a dense spec such as
    `MLP`. An algorithm can steer the run through ``ctx.artifact`` (all keys optional):
    ``masks`` (name -> bool array, overriding the candidate's), ``weights`` (a full
    state to start from: rewinding), ``start_step`` (the step those weights belong to),
    ``rewind_step`` (also return the weights at this step), ``init_seed`` (initial
    weights; default ``ctx.seed``), ``data_seed`` (minibatch order; default
    ``ctx.seed``) and ``return_weights``.

    Returns metrics ``accuracy`` (validation, for selection) and ``test_accuracy``;
    costs ``remaining`` (kept fraction of all Linear weights), ``sparsity`` (removed
    fraction of the Linear weights but the output layer's), ``weights`` (kept Linear
    weights) and ``params`` (nonzero parameters); the curve; and, when weights are
    asked for, the artifact ``{"masks", "final", "rewind"}`` (numpy arrays).

    ``costs(candidate)`` gives those four costs before training, from the masks the
    candidate chooses itself on a fresh build (their counts do not depend on the
    weights). A trial whose ``ctx.artifact`` brings masks (IMP's rounds) stores the
    costs of those masks instead, which the candidate alone cannot tell.

    Multi-fidelity: every trial trains ``steps`` from scratch (or from the artifact's
    ``start_step``); ``ctx.budget``, ``ctx.resume`` and ``ctx.checkpoint`` are not read,
    and no ``budget_spent`` is set.

    Accelerators (`memnas.evaluators.accel`): ``precision`` and ``compile`` as
    `TrainEvaluator`'s (costs ``compile_s``, summed over a ``prune_steps`` run and the
    trial's run); on a GPU, costs ``peak_memory_bytes`` and ``latency_ms`` (CUDA events,
    ``batch_size`` validation rows). A trial trains ``max(1, int(batch_size *
    ctx.batch_scale))`` examples per step, with cost ``batch_size`` when the scale is not
    1 (a retry after running out of GPU memory); at scale 1 a trial on the CPU stores
    exactly the costs ``costs(candidate)`` announces.

    Attributes:
      data: The data source.
      steps: Training steps (Adam, constant learning rate, as in Frankle & Carbin).
      batch_size: Examples per step.
      lr: Learning rate.
      report_every: Steps between curve points.
      return_weights: Always return the weights artifact.
      prune_steps: For a magnitude `SparseNet` without input masks: train densely this
        many steps, take the masks from the trained magnitudes and rewind to the
        initial weights (one-shot lottery-ticket pruning); 0 prunes at initialisation.
      init_seed: Initialise every candidate from this seed (subnetworks of one
        initialised parent, as in the node-space search); None: ``ctx.seed``.
      data_seed: Minibatch order for every candidate; None: ``ctx.seed``.
      precision: ``"fp32"``, ``"bf16"`` (the choice on a GPU) or ``"fp16"`` (GradScaler).
      compile: ``torch.compile`` the model before training; cost ``compile_s``.
      compile_backend: Its backend, e.g. ``"inductor"`` or ``"aot_eager"``.
    """

    data: Digits = Digits()
    steps: int = 500
    batch_size: int = 60
    lr: float = 1.2e-3
    report_every: int = 50
    return_weights: bool = False
    prune_steps: int = 0
    init_seed: int | None = None
    data_seed: int | None = None
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        accel.check_precision(self.precision)
        accel.check_compile(self.compile, self.compile_backend)

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains and measures ``candidate``; see the class docstring."""
        ctx = ctx if ctx is not None else Context()
        art: Mapping[str, Any] = ctx.artifact or {}
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(ctx.num_cpus)))
        try:
            return self._run(candidate, ctx, art)
        finally:
            torch.set_num_threads(previous)

    def _run(self, candidate: Any, ctx: Context, art: Mapping[str, Any]) -> Measurement:
        split = self.data.load()
        parent = candidate.parent if isinstance(candidate, SparseNet) else candidate
        width = getattr(parent, "in_features", None) if isinstance(parent, MLP) else None
        if width is not None and width != split.in_features:
            raise ConfigError(f"MLP in_features={width} does not match the data's "
                              f"{split.in_features} features; pass MLP(in_features="
                              f"{split.in_features}, ...)")
        init_seed = int(art.get("init_seed", _first(self.init_seed, ctx.seed)))
        data_seed = int(art.get("data_seed", _first(self.data_seed, ctx.seed)))
        device, batch_size = ctx.device, accel.scaled_batch(self.batch_size, ctx)
        settings = dict(device=device, precision=self.precision,
                        compile_backend=self.compile_backend if self.compile else None)
        accel.reset_peak_memory(device)
        torch.manual_seed(init_seed)
        model = parent.build()
        compile_s = 0.0
        stored = load_artifact_state(model, art)
        if stored is not None:
            masks = stored
        elif isinstance(candidate, SparseNet):
            gen = torch.Generator().manual_seed(init_seed + 1)
            if candidate.criterion == "magnitude" and self.prune_steps > 0:
                init = _snapshot(model)
                dense = train_masked(model, full_masks(model), split, self.prune_steps,
                                     batch_size, self.lr, data_seed, **settings)
                compile_s = dense.costs.get("compile_s", 0.0)
                model.load_state_dict(dense.final)
                masks = candidate.masks(model, gen)
                model.load_state_dict(init)
            else:
                masks = candidate.masks(model, gen)
        else:
            masks = full_masks(model)
        rewind_step = art.get("rewind_step")
        run = train_masked(model, masks, split, self.steps, batch_size, self.lr, data_seed,
                           start_step=int(art.get("start_step", 0)),
                           rewind_step=None if rewind_step is None else int(rewind_step),
                           report_every=self.report_every, report=ctx.report, **settings)
        names = prunable(model)
        costs = {**mask_costs(model, masks), **run.costs, **accel.device_costs(device),
                 **accel.batch_costs(self.batch_size, ctx)}
        if self.compile:
            costs["compile_s"] += compile_s
        m = Measurement(
            metrics={"accuracy": run.val_accuracy, "test_accuracy": run.test_accuracy,
                     "val_loss": run.val_loss}, costs=costs, curve=list(run.curve))
        if self.return_weights or art.get("return_weights"):
            m.artifact = {"masks": {n: v.cpu().numpy() for n, v in masks.items()},
                          "prunable": names,
                          "final": _numpy(run.final),
                          "rewind": _numpy(run.rewind) if run.rewind is not None else None}
        return m

    def costs(self, candidate: Any) -> dict[str, float]:
        """``remaining``, ``sparsity``, ``weights`` and ``params`` of ``candidate``'s own masks,
        known before training: one build on the CPU, no data, no training (class docstring).
        """
        parent = candidate.parent if isinstance(candidate, SparseNet) else candidate
        seed = _first(self.init_seed, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = parent.build()
            masks = candidate.masks(model, torch.Generator().manual_seed(seed + 1)) \
                if isinstance(candidate, SparseNet) else full_masks(model)
        apply_masks(model, masks)
        return mask_costs(model, masks)


def load_artifact_state(model: torch.nn.Module, art: Mapping[str, Any]) -> Masks | None:
    """Loads an IMP artifact's ``weights`` into ``model`` (where given) and returns its
    ``masks`` as boolean tensors, or None when it has none (the caller's default then)."""
    if art.get("weights") is not None:
        model.load_state_dict({k: torch.from_numpy(np.array(v))
                               for k, v in art["weights"].items()})
    if art.get("masks") is None:
        return None
    return {k: torch.from_numpy(np.array(v, dtype=bool)) for k, v in art["masks"].items()}


def initial_masks(model: torch.nn.Module, candidate: Any, art: Mapping[str, Any],
                  init_seed: int) -> Masks:
    """A trial's starting masks: its input artifact's (`load_artifact_state`, weights loaded
    too), else a `SparseNet` candidate's own (drawn from ``init_seed + 1``), else all kept."""
    stored = load_artifact_state(model, art)
    if stored is not None:
        return stored
    if isinstance(candidate, SparseNet):
        return candidate.masks(model, torch.Generator().manual_seed(init_seed + 1))
    return full_masks(model)


def mask_costs(model: torch.nn.Module, masks: Masks) -> dict[str, float]:
    """The costs of a masked model (see `SparseTrainEvaluator`); ``params`` counts nonzeros."""
    names = prunable(model)
    kept = {n: int(masks[n].sum()) if n in masks else model.get_parameter(n).numel()
            for n in names}
    sizes = {n: model.get_parameter(n).numel() for n in names}
    body = names[:-1] or names
    return {"remaining": sum(kept.values()) / sum(sizes.values()),
            "sparsity": 1.0 - sum(kept[n] for n in body) / sum(sizes[n] for n in body),
            "weights": float(sum(kept.values())),
            "params": float(sum(int((p != 0).sum()) for p in model.parameters()))}


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def _snapshot(model: torch.nn.Module) -> State:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _numpy(state: State) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in state.items()}


@torch.no_grad()
def _score(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: str,
           precision: str = "fp32") -> tuple[float, float]:
    model.eval()
    with accel.autocast(device, precision):
        logits = model(accel.to_device(torch.from_numpy(x), device))
        target = accel.to_device(torch.from_numpy(y), device)
        loss = float(F.cross_entropy(logits, target))
    model.train()
    accuracy = float((logits.argmax(-1) == target).float().mean())
    return accuracy, loss
