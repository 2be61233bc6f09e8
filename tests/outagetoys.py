"""A slow toy evaluator that logs each evaluation it finishes, for the store-outage tests."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

import memnas
import toyspace


@dataclasses.dataclass(frozen=True)
class LoggedToy:
    """`toyspace.evaluate` after ``seconds`` of sleep; appends "trial seed" to ``log``
    when it finishes (one line per finished evaluation, from any process), and returns
    an artifact of ``artifact_kb`` KiB of random floats when asked for one."""

    log: str
    seconds: float = 0.3
    artifact_kb: int = 0

    def __call__(self, p, ctx):
        time.sleep(self.seconds)
        m = memnas.Measurement(metrics=toyspace.evaluate(p, ctx))
        m.costs["params"] = m.metrics.pop("params")
        if self.artifact_kb:
            rng = np.random.default_rng(ctx.seed)
            m.artifact = {"w": rng.standard_normal(self.artifact_kb * 128)}
        with open(self.log, "a") as f:
            f.write(f"{ctx.trial} {ctx.seed}\n")
        return m


def finished(log: str) -> list[int]:
    """Trial numbers of every evaluation that finished, in order, repeats included."""
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [int(line.split()[0]) for line in f if line.strip()]


def experiment(url: str, log: str, name: str = "outage", **kw) -> memnas.Experiment:
    evaluator = LoggedToy(log, kw.pop("seconds", 0.3), kw.pop("artifact_kb", 0))
    return memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=evaluator,
                             algorithm="random", seed=5, store=url, cache=False,
                             objectives={"accuracy": "max"}, **kw)
