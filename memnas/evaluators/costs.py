"""Cost metrics of a candidate: parameters, inference state size, FLOPs per token, latency.

`known_costs` are those known before training (a model built once, no training), what an
evaluator's ``costs(candidate)`` hook answers; `model_costs` adds the measured latency
(CUDA events on a GPU, see `memnas.evaluators.accel`).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter

from memnas.evaluators import accel

_SDPA_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _register_cpu_sdpa_flops() -> None:
    # torch 2.13's flop counter has formulas for the CUDA attention kernels only, so
    # softmax attention on the CPU would count 0 FLOPs; register the same formula
    # (2 b h s_q s_k (d + d_v), the full score matrix, as torch counts it on CUDA).
    if _SDPA_CPU in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(_SDPA_CPU)
    def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``, each shared tensor counted once.

    Args:
      model: The module.
      trainable_only: Count only parameters with ``requires_grad``.
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


@torch.no_grad()
def measure_latency(model: nn.Module, inputs: torch.Tensor, warmup: int = 2, repeats: int = 7,
                    precision: str = "fp32") -> float:
    """Median time of one forward pass on ``inputs``, in milliseconds.

    Runs in eval mode without gradients, after ``warmup`` untimed passes (which compile a
    compiled model). Each pass is timed by `memnas.evaluators.accel.elapsed_ms`: with CUDA
    events on a GPU (synchronised), wall time on the CPU. The module's training mode is
    restored.

    Args:
      model: The module; ``inputs`` must be on its device.
      inputs: A fixed batch.
      warmup: Untimed passes first.
      repeats: Timed passes; the median is returned.
      precision: Autocast of the passes (`memnas.evaluators.accel.autocast`): ``"fp32"``,
        ``"bf16"`` or ``"fp16"``, the precision the model trained at.

    Raises:
      ValueError: if ``repeats < 1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    was_training = model.training
    model.eval()
    try:
        with accel.autocast(inputs.device, precision):
            for _ in range(warmup):
                model(inputs)
            times = [accel.elapsed_ms(lambda: model(inputs), inputs.device)
                     for _ in range(repeats)]
    finally:
        model.train(was_training)
    return statistics.median(times)


def state_bytes(candidate: Any, element_size: int = 4) -> float | None:
    """Bytes of inference-time memory one sequence carries, or None when unknown.

    ``candidate.state_numbers()`` (e.g. `memnas.searchspace.SequenceModel`: KV caches
    of attention layers after ``max_len`` tokens, fixed states of recurrent ones,
    summed over layers) times ``element_size`` (4 for float32).

    Args:
      candidate: A spec; those without ``state_numbers`` give None.
      element_size: Bytes per number at the model's dtype.
    """
    numbers = getattr(candidate, "state_numbers", None)
    value = numbers() if callable(numbers) else None
    return None if value is None else float(value * element_size)


@torch.no_grad()
def flops_per_token(model: nn.Module, inputs: torch.Tensor) -> float:
    """Forward FLOPs per token of ``model`` on ``inputs``, counted by torch's flop counter.

    Matmuls, convolutions and attention (including the CPU attention kernel, whose
    formula torch lacks and memnas registers) on one forward pass, divided by the
    number of tokens (``inputs.numel()`` for token ids ``(B, T)``); elementwise
    work is not counted, as in torch's counter. Chunked recurrent forms are
    counted as they run (their in-chunk matmuls included).

    Args:
      model: The module; ``inputs`` must be on its device.
      inputs: Token ids ``(B, T)``.
    """
    _register_cpu_sdpa_flops()
    was_training = model.training
    model.eval()
    try:
        with flop_counter.FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / max(1, inputs.numel())


def known_costs(candidate: Any, model: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """The costs of a sequence model known without training it.

    ``params``; ``flops_per_token`` (one sequence of ``inputs``, torch's flop counter);
    and ``state_bytes`` (inference memory per sequence at the model's dtype) when the
    candidate says its state size (memnas's `SequenceModel` does). Training changes
    none of them, so a freshly built model gives the trained one's.

    Args:
      candidate: The spec ``model`` was built from.
      model: The module (trained or not), on the device of ``inputs``.
      inputs: Token ids ``(B, T)``; the first row is counted.
    """
    costs = {"params": float(count_params(model)),
             "flops_per_token": flops_per_token(model, inputs[:1])}
    first = next(iter(model.parameters()), None)
    size = state_bytes(candidate, first.element_size() if first is not None else 4)
    if size is not None:
        costs["state_bytes"] = size
    return costs


def model_costs(candidate: Any, model: nn.Module, inputs: torch.Tensor,
                timed: nn.Module | None = None, precision: str = "fp32") -> dict[str, float]:
    """The costs every trained sequence model stores: `known_costs` and ``latency_ms``.

    Args:
      candidate: The spec ``model`` was built from.
      model: The trained module, on the device of ``inputs``; its costs are counted in
        float32 (as an evaluator's ``costs`` hook counts them).
      inputs: A fixed batch of token ids ``(B, T)``, timed whole for ``latency_ms``
        (median forward time, `measure_latency`).
      timed: The module timed instead of ``model``: its compiled form (``torch.compile``).
      precision: The autocast ``latency_ms`` is timed under: the training's.
    """
    latency = measure_latency(model if timed is None else timed, inputs, precision=precision)
    return {**known_costs(candidate, model, inputs), "latency_ms": latency}
