"""Loads an experiment file as an importable module so its classes can travel to Ray workers."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from memnas.errors import ConfigError, MemnasError


def load_experiment_file(path: str) -> "object":
    """Imports ``path`` as a module and returns its ``experiment`` attribute.

    The file's folder goes on ``sys.path`` and the module is imported under its own
    name (not ``__main__``), so symbolic classes it defines can be pickled to workers.

    Raises:
      ConfigError: the file is missing, not a .py file, has a syntax error or raises
        when imported (the message names the file, the line and the exception), or
        defines no ``experiment``.
    """
    from memnas.experiment import Experiment

    path = os.path.abspath(path)
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise ConfigError(f"experiment file {path!r} is not an existing .py file")
    folder, module_name = os.path.split(path[:-3])
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = sys.modules.get(module_name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") != path:
        raise ConfigError(f"experiment file {path!r} has module name {module_name!r}, which is "
                          f"already taken by {existing.__file__!r}; rename the file")
    try:
        module = importlib.import_module(module_name)
    except MemnasError:
        raise  # the file's own Experiment(...) refused a value: already one line
    except Exception as e:  # a syntax error, or an exception at import: one line, not a traceback
        raise ConfigError(_import_failure(path, e)) from None
    experiment = getattr(module, "experiment", None)
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"experiment file {path!r} must define `experiment = memnas.Experiment(...)`"
                          f", found {type(experiment).__name__}")
    experiment.module_file = path
    experiment.module_name = module_name
    return experiment


def _import_failure(path: str, error: Exception) -> str:
    """One line on why importing experiment file ``path`` failed: where, and what."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, SyntaxError):
        first = error.msg or first
        where, line = error.filename or path, error.lineno
    else:
        frames = traceback.extract_tb(error.__traceback__)
        own = [f for f in frames if os.path.abspath(f.filename) == path]
        frame = own[-1] if own else frames[-1] if frames else None
        where, line = (frame.filename, frame.lineno) if frame else (path, None)
    at = f"line {line}" if line else "import"
    if os.path.abspath(where) != path:
        at = f"{at} of {where!r}"
    what = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return f"experiment file {path!r} failed at {at}: {what}"
