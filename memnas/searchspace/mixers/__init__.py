"""Sequence mixers: each a `Mixer` spec in its own module, found through a registry.

Adding a mixer is a one-file change: write a module in this folder that defines a
`Mixer` subclass decorated with `register_mixer` (with ``build``, ``summary`` and a
``space`` classmethod). Every module here whose name does not start with an
underscore is imported below, so the new mixer joins `memory_space`'s choices.
Mixers defined elsewhere register the same way once their module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil

from memnas.searchspace.mixers._base import Mixer, get_mixer, register_mixer, registered_mixers
from memnas.searchspace.mixers.hopfield import HopfieldLayer
from memnas.searchspace.mixers.linear_attention import LinearAttention
from memnas.searchspace.mixers.softmax_attention import SoftmaxAttention

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "HopfieldLayer",
    "LinearAttention",
    "Mixer",
    "SoftmaxAttention",
    "get_mixer",
    "register_mixer",
    "registered_mixers",
]
