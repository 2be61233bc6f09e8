"""Evaluators that die, hang or log, for the failure tests (importable by Ray workers)."""

from __future__ import annotations

import os
import signal
import time


def killed_once(p, ctx):
    """SIGKILLs its own worker the first time trial 2 runs; fine afterwards."""
    marker = os.path.join(os.environ["MEMNAS_TEST_DIR"], f"killed-{ctx.trial}")
    if ctx.trial == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"accuracy": p.x, "params": float(p.y)}


def always_killed(p, ctx):
    """SIGKILLs its worker every time for trial 1."""
    if ctx.trial == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"accuracy": p.x, "params": float(p.y)}


def hangs(p, ctx):
    """Trial 1 sleeps far past any time limit."""
    if ctx.trial == 1:
        time.sleep(600)
    return {"accuracy": p.x, "params": float(p.y)}


def slow_logged(p, ctx):
    """Takes ~0.6 s and appends 'number' to a log when it finishes."""
    time.sleep(0.6)
    with open(os.path.join(os.environ["MEMNAS_TEST_DIR"], "evaluations.log"), "a") as f:
        f.write(f"{ctx.trial}\n")
    return {"accuracy": p.x, "params": float(p.y)}
