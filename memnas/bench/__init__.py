"""Benchmarks behind `memnas bench NAME`: each module here prints its figures and returns them.

A benchmark is a module ``memnas/bench/<name>.py`` with a function
``run(quick: bool = False) -> dict`` that prints a human-readable report and returns
the figures as a JSON-able dict (written by ``--json FILE``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from typing import Any

from memnas.errors import ConfigError


def available() -> list[str]:
    """Names of the benchmarks that ship with memnas."""
    import memnas.bench as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def run_bench(name: str, json_path: str | None = None, quick: bool = False,
              **options: Any) -> dict[str, Any]:
    """Runs benchmark ``name``; writes its figures to ``json_path`` when given.

    Args:
      name: The benchmark (a module of `memnas.bench`).
      json_path: Also write the figures there.
      quick: The benchmark's smaller, faster version.
      **options: Further keyword options of the benchmark's ``run`` (e.g. ``seeds``,
        ``png_dir``); those set to None are left at the benchmark's defaults.

    Raises:
      ConfigError: no benchmark of that name, or an option it does not take.
    """
    if name not in available():
        raise ConfigError(f"unknown benchmark {name!r}; expected one of {available()}")
    fn = importlib.import_module(f"memnas.bench.{name}").run
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(fn).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ConfigError(f"benchmark {name!r} takes no option {unknown[0]!r}; it takes "
                          f"{sorted(k for k in accepted if k != 'quick')}")
    figures = fn(quick=quick, **options)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    return figures
