"""An experiment file whose trials take ~0.6 s and log each finished evaluation."""

import os

import memnas
import toyspace
from failing import slow_logged

experiment = memnas.Experiment(
    name="slow", space=toyspace.point_space(), evaluator=slow_logged, algorithm="evolution",
    objectives={"accuracy": "max", "params": "min"},
    store=os.environ.get("SLOW_STORE", "sqlite:///slow.db"),
    cache=False)  # every trial evaluated: the test counts evaluations
