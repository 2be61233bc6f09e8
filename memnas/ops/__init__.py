"""Recurrent memory ops as plain tensor functions with flash-linear-attention's signatures.

Each op takes ``[B, T, H, D]`` tensors (``scale`` defaults to ``D ** -0.5``, decays are
log-space gates), accepts ``initial_state`` and returns ``(o, final_state)`` with
``final_state`` None unless ``output_final_state``. Each has a per-token reference
(``*_reference``, the recurrence as written in its paper) and a chunked or parallel
form (the op itself) that computes the same function faster.

Modules (named apart from their ops, so ``memnas.ops.mlstm`` is always the function):
`delta` (delta rule, gated delta rule), `gated_linear` (gated linear attention, simple
GLA / retention), `ssm` (Mamba's selective scan, Mamba2's scalar-decay SSD), `xlstm`
(xLSTM's matrix memory). Importing an op imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "delta_rule": "delta", "delta_rule_reference": "delta",
    "gated_delta_rule": "delta", "gated_delta_rule_reference": "delta",
    "gla": "gated_linear", "gla_reference": "gated_linear", "simple_gla": "gated_linear",
    "simple_gla_reference": "gated_linear",
    "selective_scan": "ssm", "selective_scan_reference": "ssm",
    "ssd": "ssm", "ssd_reference": "ssm",
    "mlstm": "xlstm", "mlstm_reference": "xlstm",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    # Lazy: each family's module loads when one of its ops is first used.
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"memnas.ops.{module}"), name)
    globals()[name] = value
    return value
