"""A non-neural PyGlove space and plain-function evaluators used across the tests."""

from __future__ import annotations

import math

import pyglove as pg


@pg.symbolize
class Point:
    """A point with a float, an int choice and a string choice."""

    def __init__(self, x: float, y: int, kind: str):
        self.x, self.y, self.kind = x, y, kind


def point_space():
    return Point(x=pg.floatv(0.0, 1.0), y=pg.oneof([1, 2, 3, 4]), kind=pg.oneof(["a", "b"]))


def evaluate(p, ctx):
    """accuracy peaks at x=0.3 (bonus for kind b); params grow with y."""
    for step in range(3):
        ctx.report(step, loss=1.0 / (step + 1) + p.x)
    return {"accuracy": 1.0 - (p.x - 0.3) ** 2 + (0.1 if p.kind == "b" else 0.0),
            "params": float(10 * p.y)}


def evaluate_flaky(p, ctx):
    """Raises for y == 4 and returns NaN for y == 3."""
    if p.y == 4:
        raise RuntimeError(f"cannot evaluate y={p.y}")
    if p.y == 3:
        return {"accuracy": math.nan, "params": 30.0}
    return evaluate(p, ctx)


def evaluate_seeded(p, ctx):
    """Returns the trial's seed so tests can check seeds travel."""
    return {"accuracy": float(ctx.seed % 1000) / 1000.0, "params": float(p.y)}


def evaluate_sleepy(p, ctx):
    """`evaluate`, taking 0.3 s, so that parallel trials overlap."""
    import time

    time.sleep(0.3)
    return evaluate(p, ctx)


def evaluate_brief(p, ctx):
    """`evaluate`, taking 20 ms."""
    import time

    time.sleep(0.02)
    return evaluate(p, ctx)


def evaluate_gpu_view(p, ctx):
    """Reports which GPU Ray gave the trial (as seen through CUDA_VISIBLE_DEVICES)."""
    import os
    import time

    import ray

    time.sleep(0.3)
    ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    return {"accuracy": p.x, "gpu_ids": float(len(ids)),
            "cuda_visible": float(os.environ.get("CUDA_VISIBLE_DEVICES", "-1") != ""),
            "on_cuda": float(ctx.device == "cuda")}
