"""Trainers on GPUs: autocast precision, grad scaling, torch.compile, transfers and GPU costs.

The pieces memnas's trainers (`TrainEvaluator`, `MultiTaskEvaluator`,
`LanguageModelEvaluator`, `SparseTrainEvaluator`) share to run a trial on a GPU as well
as on the CPU, each a no-op on the CPU at its default:

- precision: ``"fp32"`` (the default: no autocast, CPU results as before), ``"bf16"``
  (`torch.autocast` to bfloat16; the sensible choice on a GPU, no scaling needed) or
  ``"fp16"`` (autocast to float16 with a `torch.amp.GradScaler`). Weights and AdamW's
  state stay float32 and metrics and costs Python floats; only the forward pass and loss
  run in the lower precision. Both work on the CPU too (torch's CPU autocast and scaler),
  fp16 there slowly: for tests of the GPU's code path.
- compile: `compile_model` (``torch.compile`` with a backend) and `CompileClock`, which
  gives the cost ``compile_s``.
- checkpoints: `host_state` and `load_host_state` move model, optimizer and scaler state
  between the device and host arrays.
- transfers: `to_device` pins host batches and copies them asynchronously to a GPU.
- timing and memory: `elapsed_ms` (CUDA events on a GPU), `reset_peak_memory` and
  `device_costs` (``peak_memory_bytes`` on a GPU; omitted on the CPU, where the process's
  peak resident memory is neither per trial nor resettable).
- out-of-memory retries: `scaled_batch` and `batch_costs` read ``ctx.batch_scale``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from typing import Any, Callable, ContextManager, Iterable, Mapping

import numpy as np
import torch

from memnas.errors import ConfigError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
"""The trainers' ``precision`` values and their autocast dtypes (None: no autocast)."""


def check_precision(precision: Any) -> str:
    """``precision`` when it is one of `PRECISIONS`.

    Raises:
      ConfigError: one line naming the value otherwise.
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(map(repr, PRECISIONS))} "
                          f"('bf16' on a GPU), got {precision!r:.100}")
    return precision


def check_compile(compile: Any, backend: Any) -> None:
    """Checks the trainers' ``compile`` flag and ``compile_backend``.

    Raises:
      ConfigError: one line naming the value: ``compile`` not a bool, or ``backend`` not
        a name in ``torch.compiler.list_backends(exclude_tags=())`` (e.g. ``"inductor"``,
        ``"aot_eager"``, ``"eager"``).
    """
    if not isinstance(compile, bool):
        raise ConfigError(f"compile must be True or False, got {compile!r:.100}")
    if not isinstance(backend, str) or (  # the default needs no lookup (it imports dynamo: ~1 s)
            backend != "inductor" and backend not in torch.compiler.list_backends(exclude_tags=())):
        raise ConfigError(f"compile_backend must be a torch.compile backend such as 'inductor', "
                          f"'aot_eager' or 'eager', got {backend!r:.100}")


def autocast(device: torch.device | str, precision: str) -> ContextManager[Any]:
    """The context to run a forward pass and loss in: `torch.autocast` to the precision's
    dtype on ``device``'s type, or a no-op for ``"fp32"``."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler | None:
    """A `torch.amp.GradScaler` on ``device`` for ``"fp16"`` (float16 gradients underflow
    without it), else None (bfloat16 has float32's range)."""
    if check_precision(precision) != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   parameters: Iterable[torch.Tensor], scaler: torch.amp.GradScaler | None,
                   grad_clip: float = 0.0) -> None:
    """One update: zero the gradients, backpropagate ``loss``, clip, step.

    With a ``scaler`` the loss is scaled, the gradients unscaled before clipping, and the
    step skipped when they overflowed (the scale then shrinks), as torch's AMP recipe.

    Args:
      loss: The batch's loss (a scalar tensor).
      optimizer: The optimizer.
      parameters: The parameters whose gradient norm is clipped.
      scaler: From `grad_scaler`, or None.
      grad_clip: Max gradient norm; 0 disables clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


def host_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """A run's trainable state copied to the host as arrays and JSON (a checkpoint's part).

    ``"model"`` (name -> array of ``model.state_dict()``; pass the module, not its compiled
    wrapper), ``"optimizer"`` (parameter index -> name -> array of the per-parameter
    state) and, with a scaler, ``"scaler"`` (its scale and growth tracker: JSON numbers).
    """
    state = optimizer.state_dict()["state"]
    out: dict[str, Any] = {
        "model": {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
        "optimizer": {str(i): {k: torch.as_tensor(v).detach().cpu().numpy()
                               for k, v in s.items()} for i, s in state.items()}}
    if scaler is not None:
        out["scaler"] = {k: float(v) if isinstance(v, float) else int(v)
                         for k, v in scaler.state_dict().items()}
    return out


def load_host_state(state: Mapping[str, Any], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """Loads `host_state`'s output into ``model``, ``optimizer`` and ``scaler`` on their device.

    The optimizer keeps this run's parameter groups (learning rates) and takes the saved
    per-parameter state. The scaler is loaded when both it and ``state`` have one; a
    checkpoint of a run at another precision leaves it fresh.
    """
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state["model"].items()})
    saved = optimizer.state_dict()
    saved["state"] = {int(i): {k: torch.from_numpy(np.array(v)) for k, v in s.items()}
                      for i, s in state["optimizer"].items()}
    optimizer.load_state_dict(saved)
    saved_scaler = state.get("scaler")
    if scaler is not None and isinstance(saved_scaler, Mapping) and saved_scaler:
        own = scaler.state_dict()  # the JSON numbers back in their own types (int or float)
        scaler.load_state_dict({k: type(v)(saved_scaler.get(k, v)) for k, v in own.items()})


def compile_model(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile(model, backend=backend)``, after `torch.compiler.reset`.

    The reset clears graphs compiled for earlier trials in this process, so a trial's
    ``compile_s`` does not depend on what ran before it, and many architectures through
    one worker never reach dynamo's recompile limit (past which it silently runs eagerly).
    Compiling is lazy: the first call compiles (time it with `CompileClock`). The
    returned module shares ``model``'s parameters; save ``model``'s ``state_dict`` (the
    compiled one's names carry an ``_orig_mod.`` prefix).
    """
    torch.compiler.reset()
    return torch.compile(model, backend=backend)


def synchronize(device: torch.device | str) -> None:
    """Waits for ``device``'s queued work (CUDA); nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CompileClock:
    """Times a compiled training loop's first step against its second: ``compile_s``.

    Call `lap` after every step. The first step of a compiled model compiles it (and
    runs); the second runs only, so ``compile_s`` is the first step's time less the
    second's (the first's whole time when the loop ran one step). Synchronises the
    device at its first three marks only.
    """

    def __init__(self, device: torch.device | str, enabled: bool) -> None:
        """Starts the clock (now) when ``enabled``; a disabled clock gives no cost."""
        self.device, self.enabled = torch.device(device), enabled
        self._marks: list[float] = []
        self.lap()

    def lap(self) -> None:
        """Marks the end of a step (the first call marks the start)."""
        if self.enabled and len(self._marks) < 3:
            synchronize(self.device)
            self._marks.append(time.perf_counter())

    def costs(self) -> dict[str, float]:
        """``{"compile_s": seconds}``, or ``{}`` when disabled."""
        if not self.enabled:
            return {}
        laps = [b - a for a, b in zip(self._marks, self._marks[1:])] + [0.0, 0.0]
        return {"compile_s": max(0.0, laps[0] - laps[1])}


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``: a host tensor going to a GPU is pinned and copied with
    ``non_blocking=True`` (the copy overlaps the host's next work); on the CPU, as
    ``tensor.to(device)`` (no copy)."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def elapsed_ms(fn: Callable[[], Any], device: torch.device | str) -> float:
    """Milliseconds one call of ``fn`` takes on ``device``.

    On a GPU, between two ``torch.cuda.Event(enable_timing=True)`` recorded around the
    call on the current stream, after synchronising (the kernels' time, not the host's
    launch time); on the CPU, `time.perf_counter` around the call.
    """
    device = torch.device(device)
    if device.type != "cuda":
        start = time.perf_counter()
        fn()
        return 1000.0 * (time.perf_counter() - start)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return float(begin.elapsed_time(end))


def reset_peak_memory(device: torch.device | str) -> None:
    """Starts a trial's peak-memory count (`torch.cuda.reset_peak_memory_stats`); a no-op
    on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def device_costs(device: torch.device | str) -> dict[str, float]:
    """``{"peak_memory_bytes": torch.cuda.max_memory_allocated}`` since `reset_peak_memory`
    on a GPU (tensors allocated by torch, not the caching allocator's reserve); ``{}`` on
    the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return {}
    return {"peak_memory_bytes": float(torch.cuda.max_memory_allocated(device))}


def _batch_scale(ctx: Any) -> float:
    scale = getattr(ctx, "batch_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"ctx.batch_scale must be a positive finite number, got {scale!r:.100}")
    return float(scale)


def scaled_batch(batch_size: int, ctx: Any) -> int:
    """Sequences per step for a trial: ``max(1, int(batch_size * ctx.batch_scale))``.

    ``ctx.batch_scale`` (1.0 when the context has none) is below 1 when the runner
    retries a trial that ran out of GPU memory.

    Raises:
      ValueError: ``ctx.batch_scale`` is not a positive finite number.
    """
    return max(1, int(batch_size * _batch_scale(ctx)))


def batch_costs(batch_size: int, ctx: Any) -> dict[str, float]:
    """``{"batch_size": scaled_batch(batch_size, ctx)}`` when ``ctx.batch_scale`` is not 1
    (the trial trained with another batch than configured), else ``{}``: a trial at its
    configured batch stores the costs it always did (and its ``costs()`` hook announces)."""
    if _batch_scale(ctx) == 1.0:
        return {}
    return {"batch_size": float(scaled_batch(batch_size, ctx))}
