"""Helpers shared by the mixer tests."""

from __future__ import annotations

import torch


def random_init(module: torch.nn.Module, seed: int = 0) -> None:
    """Re-draws every parameter (N(0, 0.5^2)) so that no zero, one or constant init hides a bug."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
