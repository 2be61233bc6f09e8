"""Bilevel supernet training (DARTS, sharpDARTS) and `SupernetEvaluator`, which runs it."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from memnas.algorithms._supernet import Supernet, build_supernet
from memnas.errors import ConfigError
from memnas.measurement import Context, Measurement
from memnas.records import SUPERNET_METRIC

IGNORE_INDEX = -100
_TRAIN, _VALID, _HELD_OUT = 11, 12, 13  # seed streams: weights, alphas, final measurement
REQUEST_KEY = "sharp_darts"  # the input artifact's key that asks for a supernet run


def cosine_power_annealing(epoch: float, epochs: int, max_lr: float, min_lr: float = 0.0,
                           exponent_order: float = 10.0) -> float:
    """Cosine Power Annealing (sharpDARTS, Hundt et al. 2019): the learning rate at ``epoch``.

    With ``p = (1 + cos(pi * epoch / epochs)) / 2`` (cosine annealing, 1 -> 0) and
    order ``o``, the rate is ``min_lr + (max_lr - min_lr) * (o ** (p + 1) - o) / (o ** 2 - o)``:
    a power curve rescaled to run from ``max_lr`` (epoch 0) to ``min_lr`` (epoch
    ``epochs``) that spends less time at high rates the larger ``o`` is; ``o = 1`` (the
    limit of the formula) is plain cosine annealing.

    Raises:
      ValueError: ``epochs < 1`` or ``exponent_order <= 0``.
    """
    if epochs < 1 or not exponent_order > 0:
        raise ValueError(f"need epochs >= 1 and exponent_order > 0, got epochs={epochs}, "
                         f"exponent_order={exponent_order}")
    p = (1.0 + math.cos(math.pi * min(max(epoch, 0.0), epochs) / epochs)) / 2.0
    o = float(exponent_order)
    power = p if abs(o - 1.0) < 1e-9 else (o ** (p + 1.0) - o) / (o * o - o)
    return min_lr + (max_lr - min_lr) * power


@dataclasses.dataclass(frozen=True)
class SupernetSettings:
    """How a supernet is trained; sent by `SharpDARTS` in its input artifact.

    Attributes:
      epochs: Epochs; each is ``steps_per_epoch`` weight steps and as many alpha steps.
      steps_per_epoch: Steps per epoch.
      batch_size: Sequences per batch (None: the task evaluator's ``batch_size``, else 32).
      lr: Peak weight learning rate (AdamW), annealed per epoch by `cosine_power_annealing`.
      min_lr: Final weight learning rate.
      exponent_order: Order of the power curve (1: plain cosine).
      weight_decay: AdamW weight decay of the network's matrices.
      arch_lr: Adam learning rate of the alphas.
      arch_weight_decay: L2 penalty on the alphas.
      warmup_epochs: Epochs at the start in which only the weights train.
      first_order: True: alphas follow the validation gradient at the current weights
        (first-order DARTS); False: at the weights after one virtual step (second-order
        DARTS, the Hessian-vector product by finite differences).
      weighting: ``"softmax"`` or ``"max_w"``.
      grad_clip: Max gradient norm of the weights (0: none).
      eval_examples: Held-out examples measured at the end.
    """

    epochs: int = 10
    steps_per_epoch: int = 40
    batch_size: int | None = None
    lr: float = 3e-3
    min_lr: float = 1e-4
    exponent_order: float = 10.0
    weight_decay: float = 0.1
    arch_lr: float = 1e-2
    arch_weight_decay: float = 1e-3
    warmup_epochs: int = 0
    first_order: bool = True
    weighting: str = "softmax"
    grad_clip: float = 1.0
    eval_examples: int = 512


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Cross-entropy over scored positions (targets != -100), correct count, scored count.

    Works for ``(B, T, V)`` sequence logits and ``(B, C)`` class logits alike.
    """
    flat, y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    loss = F.cross_entropy(flat, y, ignore_index=IGNORE_INDEX)
    mask = y != IGNORE_INDEX
    with torch.no_grad():
        correct = int((flat[mask].argmax(-1) == y[mask]).sum())
    return loss, correct, int(mask.sum())


def train_supernet(supernet: Supernet, task: Any, settings: SupernetSettings, seed: int,
                   device: str = "cpu",
                   report: Callable[..., None] | None = None) -> dict[str, Any]:
    """Trains weights on training batches and alphas on validation batches, alternately.

    Every step draws a fresh training and a fresh validation batch from
    ``task.batch(n, seed)`` on separate seed streams. The curve, per epoch: ``loss``
    and ``accuracy`` (training batches), ``val_loss`` and ``val_accuracy`` (the
    batches the alphas learn from), ``lr``, and ``alpha/<decision>/<choice>``, the
    softmax of each decision's alphas (also at step 0). ``<decision>`` is the
    decision's name or id, which may hold a ``/`` (``layers[=1/2][0].mixer``): the
    choice is what follows the last ``/``.

    Args:
      supernet: From `build_supernet`.
      task: Has ``batch(n, seed) -> (inputs, targets)``; targets -100 where not scored.
      settings: The training settings.
      seed: Seed of the batches.
      device: Torch device.
      report: ``report(step, **values)`` for curve points.

    Returns:
      ``{"trajectory": {decision id: (epochs + 1, n) alphas}, "loss": ..., "accuracy": ...}``
      (held-out loss and accuracy of the mixed network).
    """
    s = settings
    report = report or (lambda step, **values: None)
    supernet.to(device).train()
    weights, arch = supernet.weight_parameters(), supernet.arch_parameters()
    decay = [p for p in weights if p.ndim >= 2]
    w_opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                               {"params": [p for p in weights if p.ndim < 2],
                                "weight_decay": 0.0}], lr=s.lr)
    a_opt = torch.optim.Adam(arch, lr=s.arch_lr, betas=(0.5, 0.999),
                             weight_decay=s.arch_weight_decay)
    batch = s.batch_size or 32
    trajectory = [[a.detach().cpu().numpy().copy() for a in arch]]
    _report_alphas(supernet, report, 0)

    def draw(stream: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = task.batch(batch, _seed(seed, stream, step))
        return x.to(device), y.to(device)

    step = 0
    for epoch in range(s.epochs):
        lr = cosine_power_annealing(epoch, s.epochs, s.lr, s.min_lr, s.exponent_order)
        for group in w_opt.param_groups:
            group["lr"] = lr
        sums = np.zeros(6)  # train loss, correct, total; val loss, correct, total
        for _ in range(s.steps_per_epoch):
            step += 1
            train_batch, val_batch = draw(_TRAIN, step), draw(_VALID, step)
            if epoch >= s.warmup_epochs:
                a_opt.zero_grad(set_to_none=True)
                if s.first_order:
                    val_loss, c, n = sequence_loss(supernet(val_batch[0]), val_batch[1])
                    val_loss.backward()
                else:
                    val_loss, c, n = _second_order_grad(supernet, weights, arch, train_batch,
                                                        val_batch, lr)
                a_opt.step()
            else:
                with torch.no_grad():
                    val_loss, c, n = sequence_loss(supernet(val_batch[0]), val_batch[1])
            sums[3:] += (float(val_loss.detach()), c, n)
            w_opt.zero_grad(set_to_none=True)
            loss, c, n = sequence_loss(supernet(train_batch[0]), train_batch[1])
            loss.backward()
            if s.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(weights, s.grad_clip)
            w_opt.step()
            sums[:3] += (float(loss.detach()), c, n)
        k = s.steps_per_epoch
        report(step, loss=sums[0] / k, accuracy=sums[1] / max(1, sums[2]),
               val_loss=sums[3] / k, val_accuracy=sums[4] / max(1, sums[5]), lr=lr)
        _report_alphas(supernet, report, step)
        trajectory.append([a.detach().cpu().numpy().copy() for a in arch])
        if not math.isfinite(sums[0]):
            break
    held_loss, held_acc = _measure(supernet, task, s.eval_examples, seed, device)
    report(step, eval_loss=held_loss, eval_accuracy=held_acc)
    return {"trajectory": {d.id: np.stack([t[i] for t in trajectory])
                           for i, d in enumerate(supernet.decisions)},
            "loss": held_loss, "accuracy": held_acc}


def _second_order_grad(supernet: Supernet, weights: list, arch: list, train_batch: tuple,
                       val_batch: tuple, xi: float) -> tuple[torch.Tensor, int, int]:
    """Sets the alphas' gradient to DARTS' second-order approximation (Liu et al. 2019, eq. 7-8)."""
    loss = sequence_loss(supernet(train_batch[0]), train_batch[1])[0]
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    backup = [w.detach().clone() for w in weights]
    with torch.no_grad():  # w' = w - xi * dL_train/dw
        for w, g in zip(weights, grads):
            if g is not None:
                w.sub_(xi * g)
    val_loss, c, n = sequence_loss(supernet(val_batch[0]), val_batch[1])
    d_arch_w = torch.autograd.grad(val_loss, arch + weights, allow_unused=True)
    d_arch, vec = d_arch_w[: len(arch)], d_arch_w[len(arch):]
    vec = [torch.zeros_like(w) if v is None else v for w, v in zip(weights, vec)]
    eps = 0.01 / (torch.sqrt(sum((v * v).sum() for v in vec)) + 1e-12)
    hessian = []
    for sign in (1.0, -1.0):  # dL_train/dalpha at w +- eps * vec
        with torch.no_grad():
            for w, b, v in zip(weights, backup, vec):
                w.copy_(b + sign * eps * v)
        loss = sequence_loss(supernet(train_batch[0]), train_batch[1])[0]
        hessian.append(torch.autograd.grad(loss, arch, allow_unused=True))
    with torch.no_grad():
        for w, b in zip(weights, backup):
            w.copy_(b)
    for a, g, hp, hn in zip(arch, d_arch, *hessian):
        g = torch.zeros_like(a) if g is None else g
        hp = torch.zeros_like(a) if hp is None else hp
        hn = torch.zeros_like(a) if hn is None else hn
        a.grad = g - xi * (hp - hn) / (2 * eps)
    return val_loss.detach(), c, n


@torch.no_grad()
def _measure(model: torch.nn.Module, task: Any, examples: int, seed: int,
             device: str) -> tuple[float, float]:
    was = model.training
    model.eval()
    x, y = task.batch(examples, _seed(seed, _HELD_OUT, 0))
    loss_sum, correct, total = 0.0, 0, 0
    for i in range(0, examples, 256):
        loss, c, n = sequence_loss(model(x[i:i + 256].to(device)), y[i:i + 256].to(device))
        loss_sum, correct, total = loss_sum + float(loss) * n, correct + c, total + n
    model.train(was)
    return (loss_sum / total if total else math.nan), (correct / total if total else 0.0)


def _report_alphas(supernet: Supernet, report: Callable[..., None], step: int) -> None:
    points = {}
    for d, probs in zip(supernet.decisions, supernet.probabilities().values()):
        for choice, p in zip(d.choices, probs):
            points[f"alpha/{d.label}/{choice}"] = float(p)
    report(step, **points)


def supernet_summary(supernet: Supernet) -> str:
    """Each mixed decision's choices with their weights, largest first: the summary
    a supernet trial is shown with (``layers[0].mixer: SoftmaxAttention 0.81,
    LinearAttention 0.19; ...``)."""
    parts = []
    for d, probs in zip(supernet.decisions, supernet.probabilities().values()):
        ranked = sorted(zip(d.choices, probs), key=lambda cp: -float(cp[1]))
        parts.append(f"{d.label}: " + ", ".join(f"{c} {float(p):.2f}" for c, p in ranked))
    return "; ".join(parts)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class SupernetEvaluator:
    """An evaluator that also trains supernets: the evaluator side of `SharpDARTS`.

    A trial whose input artifact holds a ``"sharp_darts"`` request trains the
    supernet of ``space`` (`build_supernet` with the request's ``fixed``/``default``
    rule and weighting) on ``task`` with `train_supernet`, and returns the alphas as
    its output artifact (with a ``summary`` of the choice weights), its metrics marked
    ``supernet=1`` (`memnas.records.SUPERNET_METRIC`: the trial is shown as the
    supernet, never as a candidate). Every other trial goes to ``evaluator``
    unchanged, so a derived architecture is measured exactly as any other one. The
    fingerprint is ``evaluator``'s: its results are shared with experiments that use
    ``evaluator`` itself.

    Attributes:
      evaluator: The task evaluator, e.g. a `memnas.evaluators.TrainEvaluator`.
      space: The experiment's search space.
      task: What the supernet trains on (``batch(n, seed)``); None: ``evaluator.task``.
    """

    evaluator: Callable[..., Any]
    space: Any
    task: Any = None

    def fingerprint(self) -> str:
        """The wrapped evaluator's fingerprint."""
        from memnas.hashing import evaluator_fingerprint

        return evaluator_fingerprint(self.evaluator)

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Any:
        """Trains the supernet if ``ctx.artifact`` asks for it, else calls ``evaluator``."""
        ctx = ctx if ctx is not None else Context()
        request = (ctx.artifact or {}).get(REQUEST_KEY)
        if request is None:
            return self.evaluator(candidate, ctx)
        task = self.task if self.task is not None else getattr(self.evaluator, "task", None)
        if task is None or not callable(getattr(task, "batch", None)):
            raise ConfigError("SupernetEvaluator needs a task with batch(n, seed): pass task= "
                              f"or wrap an evaluator with .task, got {self.evaluator!r:.80}")
        fields = {f.name for f in dataclasses.fields(SupernetSettings)}
        settings = SupernetSettings(**{k: v for k, v in request["settings"].items() if k in fields})
        if settings.batch_size is None:
            settings = dataclasses.replace(
                settings, batch_size=int(getattr(self.evaluator, "batch_size", 32)))
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(ctx.num_cpus)))
        try:
            return self._search(request, settings, task, ctx)
        finally:
            torch.set_num_threads(previous)

    def _search(self, request: Mapping[str, Any], settings: SupernetSettings, task: Any,
                ctx: Context) -> Measurement:
        seed = int(ctx.seed) % 2**63
        torch.manual_seed(seed)
        supernet = build_supernet(self.space, fixed=dict(request.get("fixed") or []),
                                  default=request.get("default", "first"),
                                  weighting=settings.weighting)
        start = time.perf_counter()
        out = train_supernet(supernet, task, settings, seed, ctx.device, ctx.report)
        params = sum(p.numel() for p in supernet.weight_parameters())
        decisions = [dataclasses.asdict(d) for d in supernet.decisions]
        artifact = {
            "summary": supernet_summary(supernet),
            "decisions": decisions,
            "alphas": {f"d{i}": a.detach().cpu().numpy() for i, a in enumerate(supernet.alphas)},
            "trajectory": {f"d{i}": out["trajectory"][d["id"]] for i, d in enumerate(decisions)},
            "fixed": [[k, v] for k, v in supernet.fixed.items()],
        }
        return Measurement(
            metrics={"accuracy": out["accuracy"], "loss": out["loss"], SUPERNET_METRIC: 1.0},
            costs={"params": float(params), "search_s": time.perf_counter() - start},
            artifact=artifact)
