"""Real failures: a SIGKILLed worker, a hanging evaluator, a SIGKILLed driver and its resume."""

import os
import signal
import subprocess
import sys
import time

import pytest

import failing
import memnas
import toyspace
from memnas.store import Store

pytestmark = pytest.mark.slow
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def test_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMNAS_TEST_DIR", str(tmp_path))
    return tmp_path


def _exp(url, evaluator, **kw):
    return memnas.Experiment(name="f", space=toyspace.point_space(), evaluator=evaluator,
                             algorithm="random", objectives={"accuracy": "max", "params": "min"},
                             store=url, **kw)


def test_worker_killed_mid_trial_is_retried(test_dir, sqlite_url):
    result = _exp(sqlite_url, failing.killed_once).run(max_trials=5, workers=2, executor="ray")
    df = result.trials()
    assert list(df["number"]) == [0, 1, 2, 3, 4]
    assert set(df["status"]) == {"completed"}
    assert int(df.loc[df["number"] == 2, "attempt"].iloc[0]) == 2
    assert (test_dir / "killed-2").exists()


def test_worker_killed_every_time_fails_after_max_attempts_and_hang_times_out(test_dir, sqlite_url):
    result = _exp(sqlite_url, failing.always_killed, max_attempts=2).run(
        max_trials=4, workers=2, executor="ray")
    df = result.trials().set_index("number")
    assert df.loc[1, "status"] == "failed" and df.loc[1, "attempt"] == 2
    assert "gave up after 2 attempts: worker died" in df.loc[1, "error"]
    assert (df.drop(index=1)["status"] == "completed").all() and len(df) == 4


def test_hanging_evaluator_is_cancelled_at_its_time_limit(test_dir, tmp_path):
    url = f"sqlite:///{tmp_path}/hang.db"
    start = time.monotonic()
    result = _exp(url, failing.hangs, timeout_s=3).run(max_trials=4, workers=2, executor="ray")
    assert time.monotonic() - start < 60
    df = result.trials().set_index("number")
    assert df.loc[1, "status"] == "failed" and "time limit of 3 s" in df.loc[1, "error"]
    assert (df.drop(index=1)["status"] == "completed").all() and len(df) == 4


def test_driver_killed_then_resumed_finishes_exactly_once(test_dir):
    url = f"sqlite:///{test_dir}/slow.db"
    env = {**os.environ, "SLOW_STORE": url, "PYTHONPATH": HERE,
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    run = [sys.executable, "-m", "memnas.cli"]
    file = os.path.join(HERE, "cli_files", "slow_experiment.py")
    driver = subprocess.Popen(run + ["run", file, "--max-trials", "12", "--workers", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=str(test_dir), start_new_session=True)
    deadline = time.monotonic() + 120
    done_before = set()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if not os.path.exists(f"{test_dir}/slow.db"):
            continue
        try:
            s = Store(url, read_only=True)
            exp = s.experiment("slow")
            done_before = {t["number"] for t in s.trials(exp["id"], ["completed"])} if exp else set()
            s.close()
        except memnas.StoreError:
            continue
        if len(done_before) >= 4:
            break
    assert len(done_before) >= 4, driver.stderr.read().decode()[-2000:]
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    s = Store(url)
    exp = s.experiment("slow")
    snapshot = {t["number"]: t["status"] for t in s.trials(exp["id"])}
    assert exp["status"] == "running" and "running" in snapshot.values()
    completed_at_kill = {n for n, st in snapshot.items() if st == "completed"}
    time.sleep(1.0)  # let any orphaned evaluation finish its log line
    log = test_dir / "evaluations.log"
    offset = len(log.read_text().splitlines())

    proc = subprocess.run(run + ["resume", "slow", "--store", url], env=env, cwd=str(test_dir),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming 'slow' to 12 trials with 2 workers" in proc.stderr
    trials = Store(url).trials(exp["id"])
    assert [t["number"] for t in trials] == list(range(12))
    assert all(t["status"] == "completed" for t in trials)
    after = [int(x) for x in log.read_text().splitlines()[offset:]]
    assert not set(after) & completed_at_kill, "a completed trial was evaluated again"
    assert len(after) == len(set(after)) == 12 - len(completed_at_kill)
