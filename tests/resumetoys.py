"""An experiment that can be stopped at its k-th trial: by Ctrl-C, or by SIGKILL of its driver.

Run as a script, it is a driver process: ``python resumetoys.py URL NAME ALGORITHM CACHE N``
with ``MEMNAS_TEST_STOP=kill:K`` in its environment kills itself when it first evaluates a
trial numbered K or more (``interrupt:K`` raises KeyboardInterrupt there instead).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pyglove as pg

import memnas
import toyspace

# Small options so that a dozen trials go past the algorithms' start-up phases.
OPTIONS = {
    "evolution": {"population_size": 4, "tournament_size": 2},
    "nsga2": {"population_size": 4},
    "mcts": {"bins": 4},
    "tpe": {"n_startup_trials": 3},
    "gp": {"n_startup_trials": 2},
    "cmaes": {"n_startup_trials": 3},
    "optuna_nsga2": {"population_size": 4},
}

_EVALUATIONS = [0]


def evaluate(p, ctx):
    """`toyspace.evaluate`, stopping the run where ``MEMNAS_TEST_STOP`` says (same function,
    so the same evaluator fingerprint, whether it stops or not)."""
    _EVALUATIONS[0] += 1
    if os.environ.get("MEMNAS_TEST_SLOW"):
        time.sleep(float(os.environ["MEMNAS_TEST_SLOW"]))
    how, _, at = os.environ.get("MEMNAS_TEST_STOP", "").partition(":")
    if at and ctx.trial >= int(at):     # the first evaluation of trial `at` or later
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "interrupt":
            raise KeyboardInterrupt
    return toyspace.evaluate(p, ctx)


def evaluate_floats(p, ctx):
    """`evaluate` for `float_space`: a smooth bowl, its parameters growing with z."""
    if os.environ.get("MEMNAS_TEST_SLOW"):
        time.sleep(float(os.environ["MEMNAS_TEST_SLOW"]))
    return {"accuracy": 1.0 - (p["x"] - 0.3) ** 2 - (p["z"] - 0.6) ** 2,
            "params": 10.0 * p["z"]}


def float_space():
    """Two floats: no two candidates of a search are equal unless one is proposed twice."""
    return pg.Dict(x=pg.floatv(0.0, 1.0), z=pg.floatv(0.0, 1.0))


def experiment(url: str, name: str, algorithm: str, cache: bool,
               floats: bool = False) -> memnas.Experiment:
    """The experiment every run of a contract case uses (seeded); ``floats``: on
    `float_space` instead of `toyspace.point_space`."""
    return memnas.Experiment(
        name=name, space=float_space() if floats else toyspace.point_space(),
        evaluator=evaluate_floats if floats else evaluate, algorithm=algorithm,
        algorithm_options=OPTIONS.get(algorithm, {}), seed=7, cache=cache, store=url,
        objectives={"accuracy": "max", "params": "min"})


def reset(stop: str = "") -> None:
    """Counts evaluations from zero and sets where the next run stops ("" : nowhere)."""
    _EVALUATIONS[0] = 0
    if stop:
        os.environ["MEMNAS_TEST_STOP"] = stop
    else:
        os.environ.pop("MEMNAS_TEST_STOP", None)


if __name__ == "__main__":
    url, name, algorithm, cache, n = sys.argv[1:6]
    experiment(url, name, algorithm, cache == "1").run(max_trials=int(n), executor="local")
