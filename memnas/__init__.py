"""memnas: neural-architecture search over memory architectures, on PyGlove, Ray and SQL."""

from __future__ import annotations

import importlib
from typing import Any

from memnas.errors import (ConfigError, MemnasError, StoreError, StoreFull,
                           StoreUnavailable)
from memnas.measurement import Context, Measurement

__version__ = "0.1.0"

__all__ = ["ConfigError", "Context", "Experiment", "Measurement", "MemnasError", "Result",
           "StoreError", "StoreFull", "StoreUnavailable", "load", "load_experiment_file",
           "__version__"]

_LAZY = {
    "Experiment": ("memnas.experiment", "Experiment"),
    "Result": ("memnas.result", "Result"),
    "load": ("memnas.result", "load"),
    "load_experiment_file": ("memnas.loader", "load_experiment_file"),
}
_SUBPACKAGES = {"algorithms", "evaluators", "searchspace", "hashing", "pareto", "store", "runner"}


def __getattr__(name: str) -> Any:
    # Lazy: `import memnas` stays fast; torch, ray and pyglove load when first used.
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"memnas.{name}")
    raise AttributeError(f"module 'memnas' has no attribute {name!r}")
