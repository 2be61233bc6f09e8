"""Trials Ray Tune's ASHA stops early: stored completed with every objective, costs known before
training included (real Tune, a local Ray, a temporary SQLite store)."""

from __future__ import annotations

import dataclasses
import os
import time

import pyglove as pg
import pytest

import memnas
import toyspace
import tunetoy
from memnas.runner.tune import STOPPED_EARLY
from memnas.store import Store

pytestmark = pytest.mark.slow

STEPS = 20


@dataclasses.dataclass(frozen=True)
class CurveWithKnownCosts:
    """`tunetoy.evaluate_curve`'s flat loss curves (steps 1..STEPS), with a ``costs`` hook:
    ``params`` and ``state_bytes`` are returned only at the end, but known before."""

    def __call__(self, runner, ctx):
        loss = 0.1 if runner.good else 1.0
        for step in range(1, STEPS + 1):
            time.sleep(0.005)
            ctx.report(step, loss=loss)
        return memnas.Measurement(metrics={"loss": loss}, costs=self.costs(runner))

    def costs(self, runner):
        return {"params": 10.0 + runner.index, "state_bytes": 4.0 * (runner.index + 1)}


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module; its workers import this file and the tests' helpers."""
    import ray

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([here, os.path.dirname(os.path.abspath(toyspace.__file__))])
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_stopped_trials_are_completed_with_costs_known_before_training(ray_session, sqlite_url):
    from ray.tune.schedulers import ASHAScheduler

    # Sweeping proposes the three good runners first: the bad ones meet them at ASHA's first
    # rung and are stopped there, before they return params and state_bytes.
    exp = memnas.Experiment(name="runners", space=tunetoy.runner_space(),
                            evaluator=CurveWithKnownCosts(), algorithm=pg.geno.Sweeping(),
                            objectives={"loss": "min", "params": "min", "state_bytes": "min"},
                            store=sqlite_url)
    df = exp.run(max_trials=5, workers=2, executor="tune",
                 scheduler=ASHAScheduler(metric="loss", mode="min", grace_period=1,
                                         max_t=1000)).trials()
    assert list(df["status"]) == ["completed"] * 5                  # none failed for a cost
    assert df[["loss", "params", "state_bytes"]].notna().all().all()
    stopped = df[df[STOPPED_EARLY] == 1.0]
    assert list(stopped["good"]) == [False, False]
    assert (stopped["loss"] == 1.0).all()                           # the value it reached
    assert list(stopped["params"]) == [10.0 + i for i in stopped["index"]]
    assert list(stopped["state_bytes"]) == [4.0 * (i + 1) for i in stopped["index"]]
    store = Store(sqlite_url)
    trials = {t["number"]: t for t in store.trials(store.experiment("runners")["id"])}
    for number in stopped["number"]:
        t = trials[number]
        reached = max(p["step"] for p in store.curve(t["id"]))
        assert reached < STEPS and t["costs"]["budget_spent"] == reached
        assert set(t["costs"]) >= {"params", "state_bytes", "budget_spent"}
        assert t["metrics"][STOPPED_EARLY] == 1.0
    for number in df[df["good"] == True]["number"]:  # noqa: E712 (a column of objects)
        assert STOPPED_EARLY not in trials[number]["metrics"]
