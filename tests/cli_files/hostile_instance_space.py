"""A malformed experiment file: a decision over two instances of a plain (not symbolic)
class with the same state, which memnas cannot tell apart."""

import os

import pyglove as pg

import memnas


class Activation:
    """A plain class: PyGlove can only pickle its instances."""

    def __call__(self, x):
        return max(x, 0.0)


def score(candidate, ctx):
    return {"accuracy": candidate["act"](0.5)}


experiment = memnas.Experiment(
    name="hostile-instance",
    space=pg.Dict(act=pg.oneof([Activation(), Activation()])),
    evaluator=score,
    algorithm="random",
    store=os.environ.get("HOSTILE_STORE", "sqlite:///hostile.db"),
)
