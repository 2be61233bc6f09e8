"""An experiment file (`memnas run` / `memnas resume`) for issue 18's features, chosen by
the environment: ``MEMNAS_T_FEATURE`` = asha | constraints | warm | linas, ``MEMNAS_T_SLOW``
seconds per evaluation."""

from __future__ import annotations

import os
import time

import memnas
import toyspace
from fidelitytoys import CostedToy, evaluate as _mf_evaluate

FEATURE = os.environ.get("MEMNAS_T_FEATURE", "asha")


def slow_mf(p, ctx):
    time.sleep(float(os.environ.get("MEMNAS_T_SLOW", "0")))
    return _mf_evaluate(p, ctx)


def slow_plain(p, ctx):
    time.sleep(float(os.environ.get("MEMNAS_T_SLOW", "0")))
    return toyspace.evaluate(p, ctx)


class SlowCosted(CostedToy):
    def __call__(self, p, ctx):
        time.sleep(float(os.environ.get("MEMNAS_T_SLOW", "0")))
        return super().__call__(p, ctx)


_common = dict(name="feature", space=toyspace.point_space(), seed=4, cache=False)
if FEATURE == "asha":
    experiment = memnas.Experiment(**_common, evaluator=slow_mf, algorithm="asha",
                                   algorithm_options={"min_budget": 1, "max_budget": 9, "eta": 3})
elif FEATURE == "constraints":
    experiment = memnas.Experiment(**_common, evaluator=SlowCosted(), algorithm="evolution",
                                   algorithm_options={"population_size": 4},
                                   constraints={"params": ("<=", 20)})
elif FEATURE == "warm":
    experiment = memnas.Experiment(**_common, evaluator=slow_plain, algorithm="evolution",
                                   algorithm_options={"population_size": 4},
                                   warm_start=["earlier"])
else:
    experiment = memnas.Experiment(**_common, evaluator=slow_plain, algorithm="linas",
                                   objectives={"accuracy": "max", "params": "min"},
                                   algorithm_options={"population": 4})
