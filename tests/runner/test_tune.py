"""The Ray Tune executor end to end: real Tune, a shared local Ray, a temporary SQLite store."""

import os

import pyglove as pg
import pytest

import memnas
import toyspace
import tunetoy
from memnas.errors import ConfigError
from memnas.runner.state import SearchState
from memnas.runner.tune import run_with_tune
from memnas.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module: runs find it started and leave it running."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(
                 os.path.abspath(toyspace.__file__))}})
    yield
    ray.shutdown()


def _runner_exp(url, evaluator, **kw):
    args = dict(name="runners", space=tunetoy.runner_space(), evaluator=evaluator,
                algorithm=pg.geno.Sweeping(), objectives={"loss": "min"}, store=url)
    args.update(kw)
    return memnas.Experiment(**args)


def test_toy_search_stores_every_trial_and_feeds_the_algorithm(ray_session, sqlite_url,
                                                               tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = memnas.Experiment(name="toy", space=toyspace.point_space(),
                            evaluator=toyspace.evaluate, algorithm="evolution",
                            objectives={"accuracy": "max", "params": "min"}, store=sqlite_url,
                            resources={"num_cpus": 1})
    store = Store(sqlite_url)
    state = SearchState(exp, store)
    # ASHA compares the first objective, which this evaluator only returns at the end.
    with pytest.warns(UserWarning, match="'accuracy' was never reported"):
        with state.session(max_trials=4):
            run_with_tune(state, workers=2)
    assert state.algorithm.num_feedbacks == 4
    store.close()

    result = exp.run(max_trials=6, workers=2, executor="tune", scheduler="fifo")  # continued
    df = result.trials()
    assert list(df["number"]) == list(range(6))
    assert set(df["status"]) <= {"completed", "cached"}
    assert df["accuracy"].notna().all() and df["node"].notna().all()
    assert (df["wall_time"] >= 0).all() and "stopped_early" not in df
    s = Store(sqlite_url)
    row = s.experiment("toy")
    assert row["status"] == "completed"
    assert all(len(s.curve(t["id"])) == 3 for t in s.trials(row["id"], statuses=["completed"]))
    # Tune's files went to a temporary folder, now removed.
    assert [f for f in os.listdir(tmp_path) if not f.startswith("memnas.db")] == []


def test_asha_stops_bad_trials_early_and_they_count_as_completed(ray_session, sqlite_url):
    # Sweeping proposes the three good runners first, then bad ones: by the time a bad one
    # reports, good ones hold ASHA's first rung and the bad one is stopped there.
    result = _runner_exp(sqlite_url, tunetoy.evaluate_curve).run(
        max_trials=5, workers=2, executor="tune", scheduler="asha")
    df = result.trials()
    assert list(df["number"]) == list(range(5))
    assert list(df["status"]) == ["completed"] * 5
    good = df["good"] == True  # noqa: E712 (a column of objects: True, False)
    s = Store(sqlite_url)
    ids = {t["number"]: t["id"] for t in s.trials(s.experiment("runners")["id"])}
    points = {n: len(s.curve(ids[n])) for n in df["number"]}
    assert all(points[n] == tunetoy.STEPS for n in df[good]["number"])
    assert df[good]["stopped_early"].isna().all()
    bad = df[~good]
    assert len(bad) == 2 and (bad["stopped_early"] == 1.0).all()
    assert (bad["loss"] == 1.0).all()                       # the value it had reached
    assert all(points[n] < tunetoy.STEPS for n in bad["number"])


def test_equivalence_cache_answers_repeats_without_tune(ray_session, sqlite_url):
    # Six distinct runners, ten proposals: repeats are stored as cached, not run again.
    exp = _runner_exp(sqlite_url, tunetoy.evaluate_trivial, algorithm="random")
    df = exp.run(max_trials=10, workers=2, executor="tune", scheduler="fifo").trials()
    assert list(df["number"]) == list(range(10))
    assert set(df["status"]) == {"completed", "cached"}
    assert (df["status"] == "completed").sum() <= 6


def test_raising_evaluator_fails_its_trial_and_the_search_goes_on(ray_session, sqlite_url):
    result = _runner_exp(sqlite_url, tunetoy.evaluate_raising).run(
        max_trials=5, workers=2, executor="tune", scheduler="fifo")
    df = result.trials()
    assert list(df["number"]) == list(range(5))
    assert list(df["status"]) == ["completed"] * 3 + ["failed"] * 2
    failed = df[df["status"] == "failed"]
    assert failed["error"].str.contains("Traceback").all()
    assert failed["error"].str.contains("ValueError: bad candidate").all()
    s = Store(sqlite_url)
    t = s.trial(s.experiment("runners")["id"], 4)
    assert len(s.curve(t["id"])) == 2                       # reported before it raised


def test_worker_death_is_retried(ray_session, sqlite_url, tmp_path):
    exp = _runner_exp(sqlite_url, tunetoy.evaluate_dying_once,
                      budget={"marker_dir": str(tmp_path)})
    df = exp.run(max_trials=1, workers=1, executor="tune", scheduler="fifo").trials()
    assert list(df["status"]) == ["completed"]
    assert list(df["attempt"]) == [2]


def test_stopped_before_reporting_an_objective_is_failed(ray_session, sqlite_url):
    from ray.tune.schedulers import ASHAScheduler

    exp = _runner_exp(sqlite_url, tunetoy.evaluate_curve,
                      objectives={"loss": "min", "params": "min"})
    result = exp.run(max_trials=4, workers=2, executor="tune",
                     scheduler=ASHAScheduler(metric="loss", mode="min", grace_period=1,
                                             max_t=1000))
    df = result.trials()
    assert list(df["status"]) == ["completed"] * 3 + ["failed"]
    assert df.iloc[3]["error"].startswith("stopped early by the scheduler")
    assert "['params']" in df.iloc[3]["error"]


def test_bad_settings_are_refused_before_anything_runs(sqlite_url):
    exp = _runner_exp(sqlite_url, tunetoy.evaluate_curve)
    with pytest.raises(ConfigError, match="needs executor='tune'"):
        exp.run(max_trials=2, executor="local", scheduler="asha")
    with pytest.raises(ConfigError, match="unknown executor 'tunes'"):
        exp.run(max_trials=2, executor="tunes")
    state = SearchState(exp, Store(sqlite_url))
    with pytest.raises(ConfigError, match="unknown scheduler 'pbt'"):
        run_with_tune(state, 2, scheduler="pbt")
    with pytest.raises(ConfigError, match="give mode="):
        run_with_tune(state, 2, metric="accuracy")


def test_missing_objective_stops_the_run_with_the_drivers_error(ray_session, sqlite_url):
    exp = _runner_exp(sqlite_url, tunetoy.evaluate_curve, objectives={"acc": "max"})
    with pytest.raises(ConfigError, match="objective 'acc' is not among the metrics"):
        exp.run(max_trials=4, workers=2, executor="tune", scheduler="fifo")
    # No trial has a result (the one missing 'acc' is stored failed), so the run that was
    # refused for its configuration leaves nothing behind (see tests/runner/test_claim.py).
    assert Store(sqlite_url).experiment("runners") is None
