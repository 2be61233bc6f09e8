"""Spaces and evaluators for the equivalence-cache tests (importable by Ray workers)."""

import time

import pyglove as pg
import torch


@pg.members([("a", pg.typing.Int()), ("b", pg.typing.Float(default=1.0)),
             ("mode", pg.typing.Str(default="off"))])
class Knob(pg.Object):
    """``b`` only matters when ``mode == "on"``; ``a`` saturates at 10."""

    def canonical(self):
        return self.clone(override={"a": min(self.a, 10),
                                    **({} if self.mode == "on" else {"b": 1.0})})


def score(k, ctx):
    return {"accuracy": min(k.a, 10) + (k.b if k.mode == "on" else 1.0) + ctx.seed % 7 * 1e-3}


def slow_score(k, ctx):
    time.sleep(0.5)
    return {"accuracy": float(min(k.a, 10))}


@pg.members([("width", pg.typing.Int()), ("note", pg.typing.Str())])
class Lin(pg.Object):
    """A linear layer; ``note`` is a label that does not change what it computes."""

    def build(self):
        return torch.nn.Linear(self.width, 3)

    def probe_input(self, seed):
        return torch.randn(2, self.width, generator=torch.Generator().manual_seed(seed))


def lin_score(c, ctx):
    return {"accuracy": float(c.width)}
