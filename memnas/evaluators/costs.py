"""Cost metrics of a built model: parameter count and measured forward latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


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
def measure_latency(
    model: nn.Module, inputs: torch.Tensor, warmup: int = 2, repeats: int = 7
) -> float:
    """Median wall time of one forward pass on ``inputs``, in milliseconds.

    Runs in eval mode without gradients, after ``warmup`` untimed passes, and
    synchronizes CUDA around each timed pass. The module's training mode is restored.

    Args:
      model: The module; ``inputs`` must be on its device.
      inputs: A fixed batch.
      warmup: Untimed passes first.
      repeats: Timed passes; the median is returned.

    Raises:
      ValueError: if ``repeats < 1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cuda = inputs.is_cuda
    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(inputs)
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(inputs.device)
            start = time.perf_counter()
            model(inputs)
            if cuda:
                torch.cuda.synchronize(inputs.device)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)
