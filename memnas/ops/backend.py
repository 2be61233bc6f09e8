"""Which implementation runs an op: memnas's torch code or flash-linear-attention's kernels.

``backend="torch"`` always runs the chunked torch form in `memnas.ops`. ``"fla"``
runs the Triton kernel of flash-linear-attention (``pip install memnas[gpu]``) and
fails with a clear message where it cannot (no CUDA tensor, fla not installed, or
an op fla does not ship). ``"auto"`` takes fla's kernel for CUDA tensors when fla is
installed and implements the op, and torch otherwise. On the CPU nothing here
imports fla or triton. The process-wide default is ``MEMNAS_OPS_BACKEND`` (else
``"auto"``); a mixer module's ``backend`` attribute overrides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, Callable

BACKENDS = ("auto", "torch", "fla")

# memnas op -> (fla module, fla function). The signatures agree: [B, T, H, D] tensors,
# log-space gates, scale, initial_state, output_final_state (fla >= 0.2).
FLA_KERNELS: dict[str, tuple[str, str]] = {
    "delta_rule": ("fla.ops.delta_rule", "chunk_delta_rule"),
    "gated_delta_rule": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"),
    "gla": ("fla.ops.gla", "chunk_gla"),
    "simple_gla": ("fla.ops.simple_gla", "chunk_simple_gla"),
}


def default_backend() -> str:
    """The process-wide backend: ``MEMNAS_OPS_BACKEND`` or ``"auto"``.

    Raises:
      ValueError: naming the value, if the variable holds an unknown backend.
    """
    value = os.environ.get("MEMNAS_OPS_BACKEND", "auto")
    if value not in BACKENDS:
        raise ValueError(f"MEMNAS_OPS_BACKEND must be one of {BACKENDS}, got {value!r}")
    return value


def fla_installed() -> bool:
    """Whether flash-linear-attention can be imported (checked without importing it)."""
    return importlib.util.find_spec("fla") is not None


def resolve(op: str, backend: str | None, cuda: bool) -> Callable[..., Any]:
    """Returns the function that runs ``op`` under ``backend`` for tensors on CUDA or not.

    Args:
      op: A `memnas.ops` name, e.g. ``"gla"``.
      backend: ``"auto"``, ``"torch"`` or ``"fla"``; None means `default_backend`.
      cuda: Whether the inputs are CUDA tensors.

    Raises:
      ValueError: naming the bad backend, or why ``"fla"`` cannot run ``op`` here.
    """
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    use_fla = backend == "fla" or (
        backend == "auto" and cuda and op in FLA_KERNELS and fla_installed()
    )
    if use_fla:
        if op not in FLA_KERNELS:
            raise ValueError(f"backend='fla': fla has no kernel for {op!r}; it has {sorted(FLA_KERNELS)}")
        if not cuda:
            raise ValueError(f"backend='fla' runs {op!r} on CUDA tensors only; these are on the CPU")
        if not fla_installed():
            raise ValueError("backend='fla' needs flash-linear-attention: pip install 'memnas[gpu]'")
        module, name = FLA_KERNELS[op]
        return getattr(importlib.import_module(module), name)
    return getattr(importlib.import_module("memnas.ops"), op)
