"""Benchmarks behind `memnas bench NAME`: each module here prints its figures and returns them.

A benchmark is a module ``memnas/bench/<name>.py`` with a function
``run(quick: bool = False) -> dict`` that prints a human-readable report and returns
the figures as a JSON-able dict (written by ``--json FILE``).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

from memnas.errors import ConfigError


def available() -> list[str]:
    """Names of the benchmarks that ship with memnas."""
    import memnas.bench as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def run_bench(name: str, json_path: str | None = None, quick: bool = False) -> dict[str, Any]:
    """Runs benchmark ``name``; writes its figures to ``json_path`` when given.

    Raises:
      ConfigError: no benchmark of that name.
    """
    if name not in available():
        raise ConfigError(f"unknown benchmark {name!r}; expected one of {available()}")
    figures = importlib.import_module(f"memnas.bench.{name}").run(quick=quick)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    return figures
