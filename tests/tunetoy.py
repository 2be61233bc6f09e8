"""A space of good and bad candidates whose curves tell them apart, for Ray Tune's schedulers."""

from __future__ import annotations

import time

import pyglove as pg

STEPS = 20


@pg.symbolize
class Runner:
    """A candidate whose loss curve is flat: low when good, high when bad."""

    def __init__(self, good: bool, index: int):
        self.good, self.index = good, index


def runner_space():
    # pg.geno.Sweeping enumerates the last decision fastest: the three good ones come first.
    return Runner(good=pg.oneof([True, False]), index=pg.oneof([0, 1, 2]))


def evaluate_curve(r, ctx):
    """Reports ``loss`` over STEPS steps (5 ms each): 0.1 when good, 1.0 when bad."""
    loss = 0.1 if r.good else 1.0
    for step in range(STEPS):
        time.sleep(0.005)
        ctx.report(step, loss=loss)
    return {"loss": loss, "params": float(r.index)}


def evaluate_raising(r, ctx):
    """Raises for bad candidates after two reports; otherwise a short curve."""
    ctx.report(0, loss=1.0)
    if not r.good:
        ctx.report(1, loss=1.0)
        raise ValueError(f"bad candidate {r.index}")
    ctx.report(1, loss=0.1)
    return {"loss": 0.1}


def evaluate_trivial(r, ctx):
    return {"loss": 0.1 if r.good else 1.0}


def evaluate_dying_once(r, ctx):
    """Kills its worker process the first time it sees a trial; succeeds the second time."""
    import os

    marker = os.path.join(ctx.budget["marker_dir"], f"trial{ctx.trial}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    ctx.report(0, loss=0.5)
    return {"loss": 0.5}


def evaluate_many_reports(r, ctx):
    """200 reports, no work: measures what forwarding a report to Tune costs."""
    for step in range(int(ctx.budget.get("reports", 200))):
        ctx.report(step, loss=0.1 if r.good else 1.0)
    return {"loss": 0.1 if r.good else 1.0}
