"""Names and evaluators of the experiments the dashboard tests run into a real store."""

from __future__ import annotations

import pyglove as pg

import memnas

TWO = "two-objectives"
SINGLE = "single-objective"
FAILED = "all-failed"


def evaluate(c, ctx):
    """accuracy = x (max), params = 10 y (min, a cost); fails for y == 3 and x > 0.5."""
    if c["y"] == 3 and c["x"] > 0.5:
        raise ValueError(f"cannot evaluate y={c['y']} with x={c['x']:.3f}")
    for step in range(3):
        ctx.report(step, loss=1.0 / (step + 1) + c["x"])
    return memnas.Measurement(metrics={"accuracy": c["x"], "loss": 1.0 - c["x"]},
                              costs={"params": 10.0 * c["y"]})


def evaluate_broken(c, ctx):
    """Always fails."""
    raise RuntimeError("the evaluator is broken")


def space():
    """Two decisions: a float x and a choice y."""
    return pg.Dict(x=pg.floatv(0.0, 1.0), y=pg.oneof([1, 2, 3]))


def fill_store(url: str) -> None:
    """Runs the two-objective, single-objective and all-failed experiments into ``url``."""
    memnas.Experiment(name=TWO, space=space(), evaluator=evaluate, algorithm="random",
                      objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=12, workers=1, executor="local")
    memnas.Experiment(name=SINGLE, space=space(), evaluator=evaluate, algorithm="random",
                      objectives={"loss": "min"}, seed=3,
                      store=url).run(max_trials=6, workers=1, executor="local")
    memnas.Experiment(name=FAILED, space=space(), evaluator=evaluate_broken,
                      algorithm="random", objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=2, workers=1, executor="local")


MEMORY = "memory-space"
CACHED = "discrete"


def evaluate_model(c, ctx):
    """A cheap evaluator of memory-space candidates: no training, values from the spec."""
    return memnas.Measurement(metrics={"accuracy": 1.0 / (1 + len(c.layers)) + c.d_model / 100},
                              costs={"params": float(c.d_model * len(c.layers))})


def evaluate_discrete(c, ctx):
    """accuracy = y / 3, params = 10 y."""
    return memnas.Measurement(metrics={"accuracy": c["y"] / 3}, costs={"params": 10.0 * c["y"]})


def fill_more(url: str) -> None:
    """Adds a memory-space experiment and one whose repeats the equivalence cache answers."""
    from memnas.searchspace import memory_space

    memnas.Experiment(name=MEMORY, space=memory_space(vocab_size=16, max_len=8, max_layers=2,
                                                      d_model=(8, 16)),
                      evaluator=evaluate_model, algorithm="random",
                      objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=5, workers=1, executor="local")
    memnas.Experiment(name=CACHED, space=pg.Dict(y=pg.oneof([1, 2])), evaluator=evaluate_discrete,
                      algorithm="random", objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=6, workers=1, executor="local")
