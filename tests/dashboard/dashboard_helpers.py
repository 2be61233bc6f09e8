"""Names and evaluators of the experiments the dashboard tests run into a real store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

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


def health(base: str) -> int:
    """The served dashboard's health check status (raises OSError when nothing answers)."""
    import urllib.request

    with urllib.request.urlopen(base + "/_stcore/health", timeout=5) as r:
        return r.status


@contextlib.contextmanager
def serve_dashboard(store: str, log: Any, env: dict[str, str] | None = None) -> Iterator[str]:
    """`memnas dashboard` (the CLI, in a subprocess) on ``store`` at a free port, its output
    in the file ``log``; yields its base URL once healthy, stops it as Ctrl-C does."""
    from memnas.dashboard import browser as headless

    port = headless.free_port()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "memnas.cli", "dashboard", "--store",
                                 store, "--port", str(port)], env={**os.environ, **(env or {})},
                                stdout=f, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, open(log).read()[-2000:]
            try:
                health(base)
                break
            except OSError:
                assert time.monotonic() < deadline, open(log).read()[-2000:]
                time.sleep(0.3)
        yield base
    finally:
        children = _children(proc.pid)  # Streamlit, started by the CLI's launcher
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the launcher stops Streamlit and exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    except FileNotFoundError:
        return []
    return [int(p) for p in out.stdout.split()]
