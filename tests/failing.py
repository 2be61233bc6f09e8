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


def naps(p, ctx):
    """Takes ~0.2 s, every trial."""
    time.sleep(0.2)
    return {"accuracy": p.x, "params": float(p.y)}


def overruns(p, ctx):
    """Trial 1 takes 4 s (after writing its worker's pid to 'overrun.pid'); the others
    ~0.1 s. Each returns its worker's pid as the cost ``pid``."""
    if ctx.trial == 1:
        with open(os.path.join(os.environ["MEMNAS_TEST_DIR"], "overrun.pid"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(4)
    else:
        time.sleep(0.1)
    return {"accuracy": p.x, "params": float(p.y), "pid": float(os.getpid())}


def deaf(p, ctx):
    """Trial 1 blocks SIGALRM (as code stuck in C would not answer it) and hangs."""
    if ctx.trial == 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)
    return {"accuracy": p.x, "params": float(p.y)}
