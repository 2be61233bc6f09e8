"""Loads an experiment file as an importable module so its classes can travel to Ray workers."""

from __future__ import annotations

import importlib
import os
import sys

from memnas.errors import ConfigError


def load_experiment_file(path: str) -> "object":
    """Imports ``path`` as a module and returns its ``experiment`` attribute.

    The file's folder goes on ``sys.path`` and the module is imported under its own
    name (not ``__main__``), so symbolic classes it defines can be pickled to workers.

    Raises:
      ConfigError: the file is missing, not a .py file, or defines no ``experiment``.
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
    module = importlib.import_module(module_name)
    experiment = getattr(module, "experiment", None)
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"experiment file {path!r} must define `experiment = memnas.Experiment(...)`"
                          f", found {type(experiment).__name__}")
    experiment.module_file = path
    experiment.module_name = module_name
    return experiment
