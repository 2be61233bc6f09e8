"""Search algorithms: PyGlove DNA generators, found by name through a small registry.

Importing this package registers every shipped algorithm; sharpDARTS's module (and
torch) loads on first use.
"""

from __future__ import annotations

from typing import Any

from memnas.algorithms._lazy import sharp_darts
from memnas.algorithms.base import AlgorithmHooks, Rung, hooks_of
from memnas.algorithms.evolution import nsga2, regularized_evolution
from memnas.algorithms.fidelity import SuccessiveHalving, asha, hyperband, mo_asha
from memnas.algorithms.linas import LINAS, linas
from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
from memnas.algorithms.mcts import MCTS, mcts
from memnas.algorithms.optuna_sampler import OptunaSampler
from memnas.algorithms.random_search import random_search
from memnas.algorithms.registry import ALGORITHMS, make_algorithm, register_algorithm

__all__ = ["ALGORITHMS", "AlgorithmHooks", "LINAS", "LotteryTicketIMP", "MCTS", "OptunaSampler", "Rung",
           "SharpDARTS", "SuccessiveHalving", "asha", "hyperband", "mo_asha", "SupernetEvaluator", "hooks_of", "linas", "lottery_space", "make_algorithm",
           "mcts", "nsga2", "random_search", "register_algorithm", "regularized_evolution",
           "sharp_darts"]

_TORCH_NAMES = ("SharpDARTS", "SupernetEvaluator")  # from memnas.algorithms.darts, on first use


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from memnas.algorithms import darts

        return getattr(darts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
