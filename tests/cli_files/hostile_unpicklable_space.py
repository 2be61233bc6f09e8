"""A malformed experiment file: a choice holding a lock, which cannot be serialised."""

import os
import threading

import pyglove as pg

import memnas


class Guarded:
    """A plain class whose instances hold a lock: they do not pickle."""

    def __init__(self, scale):
        self.scale, self.lock = scale, threading.Lock()


def score(candidate, ctx):
    return {"accuracy": candidate["layer"].scale}


experiment = memnas.Experiment(
    name="hostile-unpicklable",
    space=pg.Dict(layer=pg.oneof([Guarded(0.5), Guarded(1.0)]), width=pg.oneof([8, 16])),
    evaluator=score,
    algorithm="random",
    store=os.environ.get("HOSTILE_STORE", "sqlite:///hostile.db"),
)
