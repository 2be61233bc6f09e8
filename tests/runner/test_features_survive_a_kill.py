"""Multi-fidelity, constraints, warm start and LINAS on the Ray executor, into SQLite and
PostgreSQL: the driver SIGKILLed with trials running, then `memnas resume`, ends with
exactly the trials asked for, none left running, none run twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import memnas
import toyspace
from pgtools import POSTGRES_URL, reset_postgres
from memnas.store import Store

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = os.path.join(TESTS, "feature_experiment.py")
N = 12


def _env(feature: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "MEMNAS_T_FEATURE": feature,
            "MEMNAS_T_SLOW": "0.3"}


def _trials(url: str) -> list[dict]:
    try:
        s = Store(url, read_only=True)
    except Exception:          # not created yet
        return []
    try:
        exp = s.experiment("feature")
        return s.trials(exp["id"]) if exp else []
    except Exception:
        return []
    finally:
        s.close()


# Multi-fidelity on both backends; the others each on one, alternating (the store paths
# they add are exercised on both backends by tests/runner/test_constraints_warm.py).
CASES = [("asha", "sqlite"), ("asha", "postgresql"), ("constraints", "postgresql"),
         ("warm", "sqlite"), ("linas", "postgresql")]


@pytest.fixture(params=CASES, ids=[f"{f}-{b}" for f, b in CASES])
def case(request, tmp_path):
    feature, backend = request.param
    if backend == "sqlite":
        return feature, f"sqlite:///{tmp_path}/memnas.db"
    if not POSTGRES_URL:
        pytest.skip("MEMNAS_TEST_POSTGRES is not set")
    reset_postgres(POSTGRES_URL)
    return feature, POSTGRES_URL


@pytest.mark.slow
def test_a_killed_driver_resumes_with_exact_counts(case):
    feature, store_url = case
    if feature == "warm":
        memnas.Experiment(name="earlier", space=toyspace.point_space(),
                          evaluator=toyspace.evaluate, algorithm="random", seed=2,
                          store=store_url).run(max_trials=10, executor="local")
    env = _env(feature)
    cmd = [sys.executable, "-m", "memnas.cli", "run", FILE, "--store", store_url,
           "--max-trials", str(N), "--workers", "2"]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    running: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            trials = _trials(store_url)
            running = [t for t in trials if t["status"] == "running"]
            if sum(t["status"] != "running" for t in trials) >= 3 and running:
                break
            time.sleep(0.05)
        driver.kill()
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert running, "the driver never had trials running"
    done = subprocess.run([sys.executable, "-m", "memnas.cli", "resume", "feature", "--store",
                           store_url], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = _trials(store_url)
    assert len(trials) == N and all(t["status"] in ("completed", "infeasible") for t in trials)
    keys = [(t["candidate"], str(t["budget"])) for t in trials]
    if feature in ("asha", "linas"):            # never propose a candidate (at a budget) twice
        assert len(set(keys)) == N
    for t in running:                           # rerun as themselves, never proposed again
        again = next(x for x in trials if x["id"] == t["id"])
        assert again["candidate"] == t["candidate"] and again["attempt"] == 2
        if feature in ("asha", "linas"):  # evolution may propose a candidate twice anyway
            assert keys.count((t["candidate"], str(t["budget"]))) == 1
