"""`TrainEvaluator`: trains a candidate on a sequence task and measures it."""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Any, Mapping, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from memnas.evaluators import accel
from memnas.evaluators.costs import known_costs, model_costs
from memnas.evaluators.mqar import IGNORE_INDEX
from memnas.evaluators.protocol import (best_of_sweep, check_lr_sweep, check_sweep_metric,
                                        sweep_prefix)
from memnas.measurement import Context, Measurement

_TRAIN_STREAM = 1
_EVAL_STREAM = 2
CHECKPOINT_FORMAT = "memnas.TrainEvaluator/1"
"""The ``format`` entry of a `TrainEvaluator` checkpoint (see its class docstring)."""


class SequenceTask(Protocol):
    """What `TrainEvaluator` needs of a task (`MQAR` is one)."""

    vocab_size: int

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` of shape ``(n, T)``; targets -100 where not scored."""
        ...


@dataclasses.dataclass(frozen=True)
class TrainEvaluator:
    """Trains ``candidate.build()`` from scratch with AdamW and measures it.

    A picklable evaluator: ``evaluator(candidate, ctx) -> Measurement``. Each step draws a
    fresh batch from the task (seeded from ``ctx.seed`` and the step), so the model never
    sees an example twice; the held-out set (seed stream ``eval_seed``, the same for every
    trial, from the task's ``valid_batch(n, seed)`` when it has one) is never trained on.
    Linear warmup over ``warmup_frac`` of the steps, then cosine decay to 10% of ``lr``.

    Curves: every ``report_every`` steps, ``ctx.report(step, loss=..., accuracy=...)``
    with the mean loss and answer accuracy on the training batches since the last
    report (measured before each update, on unseen data); at the end,
    ``eval_loss`` and ``eval_accuracy`` on the held-out set. A run whose loss
    becomes non-finite stops there; non-finite values are left out of the curve.

    Multi-fidelity: at each step of ``eval_at`` (before the last) the held-out set is
    evaluated too: ``eval_loss``/``eval_accuracy`` curve points, metrics ``accuracy_at_<step>``
    and ``loss_at_<step>``, cost ``train_s_at_<step>`` (training seconds so far). One run
    gives a learning curve (under the full run's schedule, as ASHA's rungs of one run).

    Checkpoints (memnas's multi-fidelity rungs): the schedule's horizon is
    ``ctx.budget["max_steps"]`` when given (the top rung's steps), else ``steps``. With
    ``ctx.checkpoint`` the artifact is ``{"format": CHECKPOINT_FORMAT, "step", "seed",
    "lr", "model": {name: array}, "optimizer": {index: {"exp_avg", "exp_avg_sq",
    "step"}}, "rng": uint8 array}`` (fp16's with ``"scaler"``, its scale): the model's
    state, AdamW's per-parameter state (by parameter index) and the CPU random state,
    arrays and JSON only. With ``ctx.resume`` such a checkpoint, they are loaded and
    training continues from its step to ``steps`` on the batches of the checkpoint's seed
    stream with the same schedule: 0->50 then 50->100 trains as one 0->100 run (both
    with ``max_steps=100``). Its costs then hold ``budget_spent``, the steps trained in
    this trial, and its curve and ``eval_at`` points cover only them.

    Learning-rate sweep (the Zoology/MAD protocol): with ``lr_sweep``, the candidate
    is trained once per learning rate in the trial (``lr`` unused), each run from the
    same initialisation (a fresh build under the trial's seed) and on the same batches,
    and scored by its best run (`best_of_sweep`): the metrics (with the ``eval_at`` ones)
    and costs are that run's, plus ``best_lr`` and, for the ``i``-th rate, ``lr_<i>``,
    ``accuracy_lr_<i>`` and ``loss_lr_<i>``. Every run's
    curve is kept, its names prefixed by the rate (``lr=0.003/loss``), so a
    scheduler watching ``loss`` sees none: name a prefixed one. Its checkpoint keeps
    every run, ``{"sweep": {"<i>": run i's checkpoint}}``, and a resumed sweep continues
    each run (every rung is then scored by its best run so far, as a sweep from scratch).

    Accelerators (`memnas.evaluators.accel`): on a GPU, batches are pinned and copied
    asynchronously, and the costs add ``peak_memory_bytes`` and a CUDA-event ``latency_ms``.
    A trial trains ``max(1, int(batch_size * ctx.batch_scale))`` sequences per step, with
    cost ``batch_size`` when the scale is not 1 (a retry after running out of GPU memory).

    Attributes:
      task: The task, e.g. ``MQAR(...)``; the candidate's vocabulary must cover it.
      steps: Optimizer steps; ``ctx.budget["steps"]`` overrides it.
      batch_size: Sequences per step (times ``ctx.batch_scale``).
      lr: Peak learning rate.
      weight_decay: AdamW weight decay.
      warmup_frac: Fraction of the steps with linear warmup.
      grad_clip: Max gradient norm (0 disables clipping).
      eval_examples: Size of the held-out set.
      eval_seed: Seed of the held-out set.
      report_every: Steps between curve points.
      latency_batch_size: Rows of the fixed held-out batch timed for ``latency_ms``.
      eval_at: Steps at which to evaluate the held-out set during training as well.
      lr_sweep: Peak learning rates to train with, one run each; empty: one run at ``lr``.
      sweep_metric: How the sweep's best run is chosen: ``"accuracy"`` (highest,
        ties by lower loss) or ``"loss"`` (lowest, ties by higher accuracy).
      precision: Autocast of the forward pass and loss: ``"fp32"`` (none), ``"bf16"`` (the
        choice on a GPU) or ``"fp16"`` (with a GradScaler, its state in the checkpoint).
      compile: ``torch.compile`` the model before training; cost ``compile_s``.
      compile_backend: Its backend; ``"aot_eager"`` or ``"eager"`` need no C compiler.
    """

    task: SequenceTask
    steps: int = 500
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    eval_examples: int = 512
    eval_seed: int = 0
    report_every: int = 25
    latency_batch_size: int = 16
    eval_at: tuple[int, ...] = ()
    lr_sweep: tuple[float, ...] = ()
    sweep_metric: str = "accuracy"
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) \
                or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        object.__setattr__(self, "lr_sweep", check_lr_sweep(self.lr_sweep))
        check_sweep_metric(self.sweep_metric)
        accel.check_precision(self.precision)
        accel.check_compile(self.compile, self.compile_backend)

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains and evaluates ``candidate``.

        Args:
          candidate: An object whose ``build()`` returns a module mapping token ids
            ``(B, T)`` to logits ``(B, T, V)`` with ``V >= task.vocab_size``.
          ctx: Seed, device, budget, checkpoint to resume and curve reporting;
            defaults to ``Context()``.

        Returns:
          metrics ``accuracy`` (held-out answer accuracy) and ``loss`` (held-out cross-entropy
          on answers); costs from `model_costs` (``params``, ``latency_ms``, ``flops_per_token``,
          ``state_bytes``), ``budget_spent`` when resumed and the accelerator's (class
          docstring); the curve; a checkpoint as artifact when ``ctx.checkpoint``.

          With ``lr_sweep``, the best run's, with each run's (class docstring).

        Raises:
          ValueError: if the budget's steps are not a positive integer, its
            ``max_steps`` is below them, ``ctx.resume`` is not a checkpoint of this
            architecture at a step up to ``steps``, or the model's output has the
            wrong shape.
        """
        ctx = ctx if ctx is not None else Context()
        steps = ctx.budget.get("steps", self.steps)
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        horizon = ctx.budget.get("max_steps", steps)
        if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) \
                or horizon < steps:
            raise ValueError(f"max_steps must be an integer >= steps={steps}, got {horizon!r}")
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(ctx.num_cpus)))
        try:
            if not self.lr_sweep:
                return self._run(candidate, ctx, int(steps), int(horizon), self.lr, ctx.resume)
            parts = [_sweep_part(ctx.resume, i, lr) for i, lr in enumerate(self.lr_sweep)]
            runs = [self._run(candidate, ctx, int(steps), int(horizon), lr, part, sweep_prefix(lr))
                    for lr, part in zip(self.lr_sweep, parts)]
            best = best_of_sweep(self.lr_sweep, runs, self.sweep_metric)
            if ctx.checkpoint:
                best.artifact = {"sweep": {str(i): run.artifact for i, run in enumerate(runs)}}
            return best
        finally:
            torch.set_num_threads(previous_threads)

    def costs(self, candidate: Any) -> dict[str, float]:
        """The costs a trial of ``candidate`` stores that are known before training.

        `known_costs` (``params``, ``flops_per_token``, ``state_bytes``; not the measured
        ``latency_ms``) of the model built once on the CPU in float32, untrained, counted on
        the held-out set's first sequence as a trial counts them: cheap (~25 ms for the
        quickstart's models); torch's random state is left as it was. FLOPs that depend on
        the weights (`EpisodicMemory`'s surprise-cut events) are the untrained model's.

        Raises:
          ValueError: the candidate's vocabulary is smaller than the task's.
        """
        self._check_vocab(candidate)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = candidate.build()
        return known_costs(candidate, model, self._heldout()[0][:1])

    def _check_vocab(self, candidate: Any) -> None:
        vocab = getattr(candidate, "vocab_size", None)
        if isinstance(vocab, int) and vocab < self.task.vocab_size:
            raise ValueError(f"the candidate's vocab_size={vocab} is smaller than the task's "
                             f"vocab_size={self.task.vocab_size}")

    def _heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        # A task with a validation split (e.g. `TextCorpus`) gives the held-out set from it.
        heldout = getattr(self.task, "valid_batch", None) or self.task.batch
        return heldout(self.eval_examples, _derive_seed(self.eval_seed, _EVAL_STREAM, 0))

    def _run(self, candidate: Any, ctx: Context, steps: int, horizon: int, lr: float,
             resume: Mapping[str, Any] | None, prefix: str = "") -> Measurement:
        self._check_vocab(candidate)
        device, batch_size = torch.device(ctx.device), accel.scaled_batch(self.batch_size, ctx)
        accel.reset_peak_memory(device)
        seed = int(ctx.seed if resume is None else _checkpoint_of(resume)["seed"]) % 2**63
        torch.manual_seed(seed)
        model = candidate.build().to(device)
        net = accel.compile_model(model, self.compile_backend) if self.compile else model
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        scaler = accel.grad_scaler(device, self.precision)
        start = 0 if resume is None else _load_checkpoint(resume, model, optimizer, steps, scaler)
        warmup = max(1, int(self.warmup_frac * horizon))
        schedule = torch.optim.lr_scheduler.LambdaLR(  # rungs continue one schedule
            optimizer, lambda s: _lr_factor(start + s, warmup, horizon))
        curve: list[dict[str, Any]] = []

        def report(step: int, **values: float) -> None:
            # A diverged run's NaN is no curve point: the store keeps numbers only.
            values = {prefix + k: v for k, v in values.items() if math.isfinite(v)}
            if values:
                ctx.report(step, **values)
                curve.extend({"step": step, "name": k, "value": float(v)}
                             for k, v in values.items())

        eval_inputs, eval_targets = (accel.to_device(t, device) for t in self._heldout())
        checkpoints = {int(s) for s in self.eval_at if start < int(s) < steps}
        fidelity: dict[str, float] = {}
        fidelity_costs: dict[str, float] = {}
        train_s, clock = 0.0, time.perf_counter()
        compile_clock = accel.CompileClock(device, self.compile)

        model.train()
        window_loss, window_correct, window_total, window_steps = 0.0, 0, 0, 0
        step = start
        for step in range(start + 1, steps + 1):
            batch_seed = _derive_seed(seed, _TRAIN_STREAM, step)
            inputs, targets = (accel.to_device(t, device)
                               for t in self.task.batch(batch_size, batch_seed))
            with accel.autocast(device, self.precision):
                logits = net(inputs)
                if step == start + 1:
                    _check_logits(logits, inputs, self.task.vocab_size)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                       ignore_index=IGNORE_INDEX)
            accel.optimizer_step(loss, optimizer, model.parameters(), scaler, self.grad_clip)
            schedule.step()
            compile_clock.lap()
            with torch.no_grad():
                mask = targets != IGNORE_INDEX
                window_correct += int((logits.argmax(-1)[mask] == targets[mask]).sum())
                window_total += int(mask.sum())
            window_loss += loss.item()
            window_steps += 1
            diverged = not math.isfinite(window_loss)
            if step % self.report_every == 0 or step == steps or diverged:
                report(step, loss=window_loss / window_steps,
                       accuracy=window_correct / max(1, window_total))
                window_loss, window_correct, window_total, window_steps = 0.0, 0, 0, 0
            if diverged:
                break
            if step in checkpoints:
                train_s += time.perf_counter() - clock
                at_loss, at_accuracy = evaluate(net, eval_inputs, eval_targets, 256, self.precision)
                report(step, eval_loss=at_loss, eval_accuracy=at_accuracy)
                fidelity.update({f"accuracy_at_{step}": at_accuracy, f"loss_at_{step}": at_loss})
                fidelity_costs[f"train_s_at_{step}"] = train_s
                clock = time.perf_counter()

        train_s += time.perf_counter() - clock
        eval_loss, eval_accuracy = evaluate(net, eval_inputs, eval_targets, 256, self.precision)
        report(step, eval_loss=eval_loss, eval_accuracy=eval_accuracy)
        costs = model_costs(candidate, model, eval_inputs[: self.latency_batch_size], net,
                            self.precision)
        costs.update(compile_clock.costs(), **accel.device_costs(device),
                     **accel.batch_costs(self.batch_size, ctx))
        if checkpoints:
            fidelity.update({f"accuracy_at_{step}": eval_accuracy, f"loss_at_{step}": eval_loss})
            costs.update(fidelity_costs, **{f"train_s_at_{step}": train_s})
        if resume is not None:
            costs["budget_spent"] = float(step - start)
        artifact = _checkpoint(model, optimizer, step, seed, lr, scaler) if ctx.checkpoint else None
        return Measurement(metrics={"accuracy": eval_accuracy, "loss": eval_loss, **fidelity},
                           costs=costs, curve=curve, artifact=artifact)


@torch.no_grad()
def evaluate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
             batch_size: int = 256, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy over the scored positions (targets != -100).

    Args:
      model: Maps ``(B, T)`` token ids to ``(B, T, V)`` logits.
      inputs, targets: ``(N, T)`` token ids and targets, -100 where not scored.
      batch_size: Rows per forward pass.
      precision: The forward pass's autocast (`memnas.evaluators.accel.autocast`).

    Returns:
      ``(loss, accuracy)``; ``(nan, 0.0)`` when no position is scored.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    try:
        with accel.autocast(inputs.device, precision):
            for start in range(0, inputs.shape[0], batch_size):
                x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
                logits = model(x)
                mask = y != IGNORE_INDEX
                loss_sum += float(F.cross_entropy(logits[mask], y[mask], reduction="sum"))
                correct += int((logits[mask].argmax(-1) == y[mask]).sum())
                total += int(mask.sum())
    finally:
        model.train(was_training)
    if total == 0:
        return math.nan, 0.0
    return loss_sum / total, correct / total


def _checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, seed: int,
                lr: float, scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """A run's checkpoint (see `TrainEvaluator`; fp16's with ``"scaler"``): arrays and JSON."""
    return {"format": CHECKPOINT_FORMAT, "step": int(step), "seed": int(seed), "lr": float(lr),
            **accel.host_state(model, optimizer, scaler), "rng": torch.get_rng_state().numpy()}


def _checkpoint_of(resume: Any) -> Mapping[str, Any]:
    if not isinstance(resume, Mapping) or resume.get("format") != CHECKPOINT_FORMAT \
            or not {"step", "seed", "model", "optimizer"} <= set(resume):
        got = f"keys {sorted(resume)}" if isinstance(resume, Mapping) else type(resume).__name__
        raise ValueError(f"ctx.resume must be a {CHECKPOINT_FORMAT} checkpoint (what a "
                         f"TrainEvaluator returns with ctx.checkpoint), got {got:.200}")
    return resume


def _sweep_part(resume: Any, index: int, lr: float) -> Mapping[str, Any] | None:
    if resume is None:
        return None
    runs = resume.get("sweep") if isinstance(resume, Mapping) else None
    part = runs.get(str(index)) if isinstance(runs, Mapping) else None
    if part is None or _checkpoint_of(part).get("lr") != lr:
        got = part.get("lr") if isinstance(part, Mapping) else "none"
        raise ValueError(f"ctx.resume must hold a checkpoint of run {index} (lr={lr!r}) of this "
                         f"learning-rate sweep, got {got!r:.100}")
    return part


def _load_checkpoint(resume: Mapping[str, Any], model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, steps: int,
                     scaler: torch.amp.GradScaler | None) -> int:
    """Loads a checkpoint into ``model``, ``optimizer`` and ``scaler``; returns its step."""
    ckpt = _checkpoint_of(resume)
    start = int(ckpt["step"])
    if not 0 <= start <= steps:
        raise ValueError(f"ctx.resume is a checkpoint at step {start}, not in [0, steps={steps}]")
    own, theirs = model.state_dict(), ckpt["model"]
    odd = sorted(set(own) ^ set(theirs))
    if odd:
        raise ValueError(f"ctx.resume is a checkpoint of another architecture: parameter(s) "
                         f"{odd[:3]} are in one model only")
    for name, tensor in own.items():
        if tuple(np.shape(theirs[name])) != tuple(tensor.shape):
            raise ValueError(f"ctx.resume is a checkpoint of another architecture: {name!r} has "
                             f"shape {tuple(np.shape(theirs[name]))} there, "
                             f"{tuple(tensor.shape)} here")
    accel.load_host_state(ckpt, model, optimizer, scaler)
    if ckpt.get("rng") is not None:
        torch.set_rng_state(torch.from_numpy(np.array(ckpt["rng"], dtype=np.uint8)))
    return start


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0])


def _check_logits(logits: torch.Tensor, inputs: torch.Tensor, vocab_size: int) -> None:
    if logits.ndim != 3 or logits.shape[:2] != inputs.shape or logits.shape[-1] < vocab_size:
        raise ValueError(f"the model must map token ids {tuple(inputs.shape)} to logits "
                         f"(B, T, V >= {vocab_size}), got shape {tuple(logits.shape)}")
