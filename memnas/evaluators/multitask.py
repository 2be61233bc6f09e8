"""`MultiTaskEvaluator`: one model per task, trained from scratch, accuracies and their mean."""

from __future__ import annotations

import dataclasses
import numbers
import re
import zlib
from typing import Any, Mapping

from memnas.evaluators import accel
from memnas.evaluators.protocol import check_lr_sweep, check_sweep_metric
from memnas.evaluators.training import SequenceTask, TrainEvaluator, _derive_seed
from memnas.measurement import Context, Measurement

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class _TaskContext(Context):
    """A task's own `Context` whose reports go on to the trial's, renamed and offset."""

    def __init__(self, parent: Context, name: str, offset: int, **fields: Any) -> None:
        super().__init__(**fields)
        self._parent, self._name, self._offset = parent, name, offset

    def report(self, step: int, **metrics: float) -> None:
        super().report(step, **metrics)
        self._parent.report(
            self._offset + step, **{f"{k}_{self._name}": v for k, v in metrics.items()}
        )


@dataclasses.dataclass(frozen=True)
class MultiTaskEvaluator:
    """Trains a fresh copy of the candidate on each task separately and averages the scores.

    The protocol of MAD (Poli et al., "Mechanistic Design and Scaling of Hybrid
    Architectures", ICML 2024): every task gets its own model, built from the same
    spec and trained from scratch with `TrainEvaluator`'s loop and settings; the
    candidate is scored by each task's held-out accuracy and by their mean. Tasks
    run one after another in the trial's process.

    Each task's training seed comes from the trial's seed and the task's name, so a
    task's result does not depend on which other tasks share the suite or their
    order. With ``match_vocab`` (the default) a symbolic candidate with a
    ``vocab_size`` field is cloned with the task's vocabulary for each task, as MAD
    sizes its models per task; otherwise the model's output must cover each task.
    Either way the candidate's ``vocab_size``, when it has one, must cover the
    largest task's, and its ``max_len`` the longest sequence.

    Curves: each task's points reach ``ctx.report`` as ``<metric>_<task>`` (e.g.
    ``loss_recall``, ``eval_accuracy_recall``), with the steps of the ``i``-th task
    offset by ``i * steps`` so that one trial's steps keep increasing.

    With ``lr_sweep`` each task sweeps the learning rate, as MAD does (see
    `TrainEvaluator`): a task's ``acc_<task>`` and ``loss_<task>`` are its best
    run's, ``best_lr_<task>`` that run's rate, and every run's curve is kept
    (``lr=0.003/loss_<task>``).

    Multi-fidelity: each task's run checkpoints and resumes as `TrainEvaluator`'s
    (``ctx.budget``'s ``max_steps`` is each task's schedule horizon): with
    ``ctx.checkpoint`` the artifact is ``{"tasks": {name: that task's checkpoint}}``,
    and with ``ctx.resume`` such an artifact every task continues its own run (costs
    then hold ``budget_spent``, the steps each task trained in this trial).

    Accelerators: ``precision``, ``compile`` and ``compile_backend`` are each task's
    `TrainEvaluator`'s, and so are its GPU costs (``peak_memory_bytes``, ``latency_ms``),
    ``ctx.batch_scale`` and cost ``batch_size``; a cost is the largest over the tasks but
    ``compile_s``, their sum (every task's model is compiled afresh).

    Attributes:
      tasks: ``(name, task)`` pairs (a mapping is accepted and turned into pairs);
        names of letters, digits and underscores.
      steps: Optimizer steps per task; ``ctx.budget["steps"]`` overrides it.
      batch_size: Sequences per step.
      lr: Peak learning rate.
      weight_decay: AdamW weight decay.
      warmup_frac: Fraction of the steps with linear warmup.
      grad_clip: Max gradient norm (0 disables clipping).
      eval_examples: Size of each task's held-out set.
      eval_seed: Seed of the held-out sets.
      report_every: Steps between curve points.
      latency_batch_size: Rows of a held-out batch timed for ``latency_ms``.
      match_vocab: Clone the candidate with each task's ``vocab_size``.
      lr_sweep: Peak learning rates each task trains with, one run each; empty: ``lr``.
      sweep_metric: How a task's best run is chosen: ``"accuracy"`` or ``"loss"``.
      precision: ``"fp32"``, ``"bf16"`` (the choice on a GPU) or ``"fp16"`` (`TrainEvaluator`).
      compile: ``torch.compile`` each task's model; cost ``compile_s``.
      compile_backend: Its backend, e.g. ``"inductor"`` or ``"aot_eager"``.
    """

    tasks: tuple[tuple[str, SequenceTask], ...] | Mapping[str, SequenceTask]
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
    match_vocab: bool = True
    lr_sweep: tuple[float, ...] = ()
    sweep_metric: str = "accuracy"
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_sweep", check_lr_sweep(self.lr_sweep))
        check_sweep_metric(self.sweep_metric)
        accel.check_precision(self.precision)
        accel.check_compile(self.compile, self.compile_backend)
        pairs = tuple(self.tasks.items() if isinstance(self.tasks, Mapping) else self.tasks)
        if not pairs:
            raise ValueError("MultiTaskEvaluator needs at least one task, got none")
        names = [name for name, _ in pairs]
        bad = [n for n in names if not isinstance(n, str) or not _NAME.match(n)]
        if bad:
            raise ValueError(
                f"task names must be letters, digits and underscores, got {bad!r}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names!r}")
        for name, task in pairs:
            if not isinstance(getattr(task, "vocab_size", None), int) or not callable(
                getattr(task, "batch", None)
            ):
                raise TypeError(
                    f"task {name!r} must have an int vocab_size and a batch(n, seed) method, "
                    f"got {task!r}"
                )
        object.__setattr__(self, "tasks", tuple((str(n), t) for n, t in pairs))

    @property
    def task_names(self) -> list[str]:
        """The tasks' names, in order."""
        return [name for name, _ in self.tasks]

    def trainer(self, task: SequenceTask) -> TrainEvaluator:
        """The `TrainEvaluator` that trains and measures one task with these settings.

        Its fields that this class lacks (e.g. ``eval_at``) keep their defaults.
        """
        mine = {f.name for f in dataclasses.fields(self)}
        settings = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(TrainEvaluator)
            if f.name != "task" and f.name in mine
        }
        return TrainEvaluator(task=task, **settings)

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains one model per task and measures each.

        Args:
          candidate: An object whose ``build()`` returns a module mapping token ids
            ``(B, T)`` to logits ``(B, T, V)``; see the class docstring on vocabularies.
          ctx: Seed, device, budget and curve reporting; defaults to ``Context()``.

        Returns:
          metrics ``acc_<task>`` and ``loss_<task>`` for each task (with a sweep,
          ``best_lr_<task>`` too), ``accuracy`` and ``loss`` their means; each cost
          (``params``, ``latency_ms``, ``flops_per_token``, ``state_bytes``, ...) the
          largest over the tasks' models (``compile_s`` their sum); the curve of every
          task; with ``ctx.checkpoint``, every task's checkpoint (class docstring).

        Raises:
          ValueError: if the candidate's vocabulary is smaller than a task's,
            ``ctx.resume`` lacks a task's checkpoint, or a task's training rejects
            the candidate (see `TrainEvaluator`).
        """
        ctx = ctx if ctx is not None else Context()
        self._check_vocab(candidate)
        steps = ctx.budget.get("steps", self.steps)
        fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(Context)}
        resumes = [self._task_resume(ctx.resume, name) for name in self.task_names]
        metrics: dict[str, float] = {}
        costs: dict[str, float] = {}
        checkpoints: dict[str, Any] = {}
        start = len(ctx.curve)
        for index, (name, task) in enumerate(self.tasks):
            seed = _derive_seed(int(ctx.seed) % 2**63, zlib.crc32(name.encode()))
            offset = index * int(steps) if isinstance(steps, numbers.Integral) else 0
            child = _TaskContext(ctx, name, offset, **{**fields, "seed": seed, "curve": [],
                                                       "resume": resumes[index]})
            if hasattr(ctx, "batch_scale"):  # an attribute on a Context without the field
                child.batch_scale = ctx.batch_scale  # type: ignore[attr-defined]
            m = self.trainer(task)(self._for_task(candidate, task), child)
            checkpoints[name] = m.artifact
            metrics[f"acc_{name}"] = m.metrics["accuracy"]
            metrics[f"loss_{name}"] = m.metrics["loss"]
            if self.lr_sweep:
                metrics[f"best_lr_{name}"] = m.metrics["best_lr"]
            for key, value in m.costs.items():
                costs[key] = costs.get(key, 0.0) + value if key == "compile_s" \
                    else max(costs.get(key, value), value)
        n = len(self.tasks)
        metrics["accuracy"] = sum(metrics[f"acc_{name}"] for name in self.task_names) / n
        metrics["loss"] = sum(metrics[f"loss_{name}"] for name in self.task_names) / n
        return Measurement(metrics=metrics, costs=costs, curve=list(ctx.curve[start:]),
                           artifact={"tasks": checkpoints} if ctx.checkpoint else None)

    def costs(self, candidate: Any) -> dict[str, float]:
        """The costs a trial stores that are known before training: each task's
        `TrainEvaluator.costs` (models built once, untrained), the largest over the tasks.

        Raises:
          ValueError: if the candidate's vocabulary is smaller than a task's.
        """
        self._check_vocab(candidate)
        costs: dict[str, float] = {}
        for _, task in self.tasks:
            for key, value in self.trainer(task).costs(self._for_task(candidate, task)).items():
                costs[key] = max(costs.get(key, value), value)
        return costs

    def _check_vocab(self, candidate: Any) -> None:
        largest = max(task.vocab_size for _, task in self.tasks)
        vocab = getattr(candidate, "vocab_size", None)
        if isinstance(vocab, int) and vocab < largest:
            raise ValueError(
                f"the candidate's vocab_size={vocab} is smaller than the largest task "
                f"vocab_size={largest}"
            )

    @staticmethod
    def _task_resume(resume: Any, name: str) -> Any:
        if resume is None:
            return None
        tasks = resume.get("tasks") if isinstance(resume, Mapping) else None
        if not isinstance(tasks, Mapping) or tasks.get(name) is None:
            got = sorted(tasks) if isinstance(tasks, Mapping) else \
                (sorted(resume) if isinstance(resume, Mapping) else type(resume).__name__)
            raise ValueError(f"ctx.resume must be a MultiTaskEvaluator checkpoint "
                             f"{{'tasks': {{name: checkpoint}}}} with task {name!r}, got {got}")
        return tasks[name]

    def _for_task(self, candidate: Any, task: SequenceTask) -> Any:
        if not self.match_vocab:
            return candidate
        init_args = getattr(candidate, "sym_init_args", None)
        if init_args is None or "vocab_size" not in init_args:
            return candidate
        if candidate.vocab_size == task.vocab_size:
            return candidate
        return candidate.clone(deep=True, override={"vocab_size": task.vocab_size})
