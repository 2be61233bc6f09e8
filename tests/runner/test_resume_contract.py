"""Stopping changes nothing: a search stopped and continued proposes what an uninterrupted one does.

For every registered algorithm (in-process executor, one worker: deterministic), a run
stopped after k trials (its run ended, Ctrl-C, or SIGKILL of its driver process) and
then continued to n stores the same candidates in the same order as an uninterrupted
run to n with the same seed, with the equivalence cache on and off. On Ray with two
workers, where completion order varies, no candidate running at a crash is proposed
a second time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import memnas
import resumetoys
from memnas.algorithms import ALGORITHMS, AlgorithmHooks, make_algorithm
from memnas.store import Store
from pgtools import POSTGRES_URL, reset_postgres

N, K = 10, 4
GENERIC = sorted(n for n in ALGORITHMS if not isinstance(make_algorithm(n, seed=0),
                                                      AlgorithmHooks))
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every algorithm on SQLite; on PostgreSQL the cases whose store work differs from SQLite's
# (a killed driver's rows, resumed), for a few algorithms: replaying is the algorithm's part
# and the store's contract has its own shared suite (tests/store). The whole cross product
# took about 10 minutes of the suite.
ON_POSTGRES = ("evolution", "random", "tpe") if POSTGRES_URL else ()


def _url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/memnas.db"
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


def _candidates(url: str, name: str) -> list[str]:
    s = Store(url, read_only=True)
    try:
        return [t["candidate"] for t in s.trials(s.experiment(name)["id"])]
    finally:
        s.close()


def _uninterrupted(url: str, algorithm: str, cache: bool) -> list[str]:
    resumetoys.reset()
    resumetoys.experiment(url, "whole", algorithm, cache).run(max_trials=N, executor="local")
    return _candidates(url, "whole")


def _stop(url: str, algorithm: str, cache: bool, how: str) -> None:
    """Runs the experiment "stopped" until it stops after K finished trials."""
    if how == "finish":
        resumetoys.reset()
        resumetoys.experiment(url, "stopped", algorithm, cache).run(max_trials=K,
                                                                    executor="local")
    elif how == "interrupt":
        resumetoys.reset(f"interrupt:{K}")
        with pytest.raises(KeyboardInterrupt):
            resumetoys.experiment(url, "stopped", algorithm, cache).run(max_trials=N,
                                                                        executor="local")
    else:
        env = {**os.environ, "MEMNAS_TEST_STOP": f"kill:{K}",
               "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([sys.executable, os.path.join(TESTS, "resumetoys.py"), url,
                               "stopped", algorithm, "1" if cache else "0", str(N)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == -9, done.stderr[-2000:]


@pytest.mark.parametrize("cache", [False, True], ids=["nocache", "cache"])
@pytest.mark.parametrize("backend,algorithm,how", [
    *(("sqlite", a, h) for a in GENERIC for h in ("finish", "interrupt", "kill")),
    *(("postgresql", a, "kill") for a in GENERIC if a in ON_POSTGRES)])
def test_a_stopped_search_continues_as_if_it_had_never_stopped(tmp_path, backend, algorithm,
                                                                how, cache):
    url = _url(backend, tmp_path)
    # Another store: with the cache on, the stopped run would reuse the whole run's results.
    whole = _uninterrupted(f"sqlite:///{tmp_path}/whole.db", algorithm, cache)
    _stop(url, algorithm, cache, how)
    stopped = _candidates(url, "stopped")
    assert len(stopped) == K if how == "finish" else len(stopped) > K  # + one left running
    resumetoys.reset()
    resumetoys.experiment(url, "stopped", algorithm, cache).run(max_trials=N, executor="local")
    resumed = _candidates(url, "stopped")
    assert resumed == whole
    if not cache:                      # without the cache a repeat would be run again
        df = memnas.load("stopped", url).trials()
        assert (df["status"] == "completed").all()


# On Ray (a subprocess driver and two Ray starts a case, 15-40 s each), algorithms of each
# kind: the in-process "kill" case above holds every algorithm to the same guarantee.
ON_RAY = ("evolution", "mcts", "optuna_nsga2", "random")


@pytest.mark.slow
@pytest.mark.parametrize("backend,algorithm", [
    *(("sqlite", a) for a in GENERIC if a in ON_RAY),
    *(("postgresql", a) for a in GENERIC if a in ON_POSTGRES[:2])])
def test_after_a_driver_is_killed_on_ray_no_running_candidate_is_proposed_again(
        tmp_path, backend, algorithm):
    """Two Ray workers, cache off, a space of two floats (no two proposals are equal by
    chance): the driver is killed with trials running; the resumed run reruns them as
    themselves and never proposes one of them, or anything else, again."""
    url = _url(backend, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "MEMNAS_TEST_SLOW": "0.2"}
    code = ("import resumetoys, sys; resumetoys.experiment(sys.argv[1], 'ray', sys.argv[2], "
            "False, floats=True).run(max_trials=10, workers=2, executor='ray')")
    driver = subprocess.Popen([sys.executable, "-c", code, url, algorithm], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        running = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                s = Store(url, read_only=True)
                exp = s.experiment("ray")
                trials = s.trials(exp["id"]) if exp else []
                s.close()
            except Exception:   # the store is being created
                trials = []
            done = [t for t in trials if t["status"] == "completed"]
            running = [t for t in trials if t["status"] == "running"]
            if len(done) >= 3 and running:
                break
            time.sleep(0.05)
        driver.kill()
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert running, "the driver never had trials running"
    resumetoys.reset()
    resumetoys.experiment(url, "ray", algorithm, False, floats=True).run(
        max_trials=10, workers=2, executor="ray")
    df = memnas.load("ray", url).trials()
    assert len(df) == 10 and (df["status"] == "completed").all()
    s = Store(url, read_only=True)
    candidates = [t["candidate"] for t in s.trials(s.experiment("ray")["id"])]
    for t in running:  # rerun as themselves, never proposed again
        assert candidates.count(t["candidate"]) == 1
    assert len(set(candidates)) == 10   # two floats: a repeat can only be a second proposal
