"""Time limits count from the evaluator's start on its worker and stop it within a second."""

import signal
import time

import pytest

import failing
import memnas
import toyspace
from memnas.runner import driver
from memnas.runner._trial import run_trial
from memnas.runner.executors import start_ray, stop_ray
from memnas.measurement import Context

LIMIT = 1.5
SLACK = 1.0          # the limit is enforced within this many seconds


@pytest.fixture
def test_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMNAS_TEST_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def one_worker_ray():
    """A local Ray of one CPU: every trial runs in the same worker process while it lives."""
    import ray

    assert not ray.is_initialized()
    start_ray(None, 1, [failing, toyspace])
    yield
    stop_ray()


def _exp(url, evaluator, name="t", **kw):
    return memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=evaluator,
                             algorithm="random", objectives={"accuracy": "max", "params": "min"},
                             store=url, cache=False, **kw)


def _check_overrun(df, test_dir):
    """Trial 1 (4 s) was failed at the limit by its worker, which then ran the next trials."""
    t = df.set_index("number")
    assert t.loc[1, "status"] == "failed"
    assert t.loc[1, "error"] == f"timed out: ran {LIMIT:.1f} s, over the time limit of {LIMIT} s"
    assert LIMIT <= t.loc[1, "wall_time"] < LIMIT + SLACK
    ran = (t.loc[1, "finished_at"] - t.loc[1, "started_at"]).total_seconds()
    assert ran < LIMIT + SLACK, f"stored failed {ran:.2f} s after submission"
    rest = t.drop(index=1)
    assert (rest["status"] == "completed").all() and len(rest) == 3
    pid = float((test_dir / "overrun.pid").read_text())
    assert (rest.loc[rest.index > 1, "pid"] == pid).all(), "the worker did not run on"


def test_in_process_trial_is_stopped_at_its_limit_and_the_alarm_handler_restored(test_dir):
    def mine(signum, frame):
        raise AssertionError("the test's own alarm fired")

    previous = signal.signal(signal.SIGALRM, mine)
    signal.setitimer(signal.ITIMER_REAL, 100.0)      # a timer armed before: kept
    try:
        start = time.monotonic()
        result = _exp(f"sqlite:///{test_dir}/l.db", failing.overruns, timeout_s=LIMIT).run(
            max_trials=4, executor="local")
        elapsed = time.monotonic() - start
        assert signal.getsignal(signal.SIGALRM) is mine
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 100.0 - elapsed - 1.0 < left <= 100.0 - elapsed + 0.01
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _check_overrun(result.trials(), test_dir)
    assert elapsed < 4.0


def test_evaluator_that_swallows_exceptions_is_still_timed_out():
    def stubborn(candidate, ctx):
        try:
            time.sleep(3)
        except Exception:     # the limit is not an Exception: not caught here
            return {"accuracy": 1.0}
        return {"accuracy": 1.0}

    start = time.monotonic()
    outcome = run_trial(stubborn, None, Context(), time_limit=0.3)
    assert time.monotonic() - start < 1.0
    assert outcome.status == "failed" and outcome.error.startswith("timed out: ran 0.3 s")
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.slow
def test_worker_start_up_does_not_count_against_the_limit(test_dir):
    """A fresh local Ray each run (cold workers): 0.2 s trials never reach a 1 s limit."""
    for run in range(2):
        url = f"sqlite:///{test_dir}/cold{run}.db"
        df = _exp(url, failing.naps, timeout_s=1.0).run(max_trials=4, workers=2,
                                                        executor="ray").trials()
        assert list(df["status"]) == ["completed"] * 4, (run, list(df["error"]))


@pytest.mark.slow
def test_ray_trial_is_stopped_at_its_limit_and_its_worker_runs_on(test_dir, one_worker_ray):
    result = _exp(f"sqlite:///{test_dir}/r.db", failing.overruns, timeout_s=LIMIT).run(
        max_trials=4, workers=1, executor="ray")
    _check_overrun(result.trials(), test_dir)


@pytest.mark.slow
def test_driver_cancels_a_trial_deaf_to_the_alarm_after_the_grace(test_dir, one_worker_ray,
                                                                  monkeypatch):
    monkeypatch.setattr(driver, "BACKSTOP_GRACE_S", 2.0)
    result = _exp(f"sqlite:///{test_dir}/d.db", failing.deaf, timeout_s=1.0).run(
        max_trials=3, workers=1, executor="ray")
    t = result.trials().set_index("number")
    assert t.loc[1, "status"] == "failed"
    assert t.loc[1, "error"] == "timed out: still running after the time limit of 1.0 s"
    ran = (t.loc[1, "finished_at"] - t.loc[1, "started_at"]).total_seconds()
    assert 3.0 <= ran < 3.0 + SLACK, f"cancelled {ran:.2f} s after submission"
    assert (t.drop(index=1)["status"] == "completed").all() and len(t) == 3
