"""A malformed experiment file: a decision over lambdas, which have no importable name."""

import os

import pyglove as pg

import memnas


def score(candidate, ctx):
    return {"accuracy": candidate["act"](0.5)}


experiment = memnas.Experiment(
    name="hostile-lambda",
    space=pg.Dict(act=pg.oneof([lambda x: x, lambda x: -x])),
    evaluator=score,
    algorithm="random",
    store=os.environ.get("HOSTILE_STORE", "sqlite:///hostile.db"),
)
