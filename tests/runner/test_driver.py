"""The driver loop with the in-process executor: storage, failures, continuation, bad input."""

import json

import pyglove as pg
import pytest
import sqlalchemy as sa

import memnas
import toyspace
from memnas.errors import ConfigError, StoreError
from memnas.store import Store


def _exp(url, **kw):
    args = dict(name="toy", space=toyspace.point_space(), evaluator=toyspace.evaluate,
                algorithm="evolution", objectives={"accuracy": "max", "params": "min"}, store=url)
    args.update(kw)
    return memnas.Experiment(**args)


def test_plain_function_over_non_neural_space(store_url):
    result = _exp(store_url).run(max_trials=12, workers=3, executor="local")
    df = result.trials()
    assert list(df["number"]) == list(range(12))
    assert set(df["status"]) == {"completed"}
    assert {"accuracy", "params", "decisions", "summary"} <= set(df.columns)
    row = df.iloc[0]
    assert set(row["decisions"]) == {"x", "y", "kind"}
    assert len(result.curve(0)) == 3
    front = result.pareto_front()
    assert 1 <= len(front) <= 12
    assert result.best()["accuracy"] == df["accuracy"].max()


def test_rows_hold_candidate_json_hash_seed_and_timing(sqlite_url):
    _exp(sqlite_url).run(max_trials=4, executor="local")
    s = Store(sqlite_url)
    (t0, *_rest) = s.trials(s.experiment("toy")["id"])
    cand = pg.from_json_str(t0["candidate"])
    assert isinstance(cand, toyspace.Point)
    assert len(t0["sym_hash"]) == 64 and t0["seed"] > 0
    assert t0["wall_time"] >= 0 and t0["finished_at"] >= t0["started_at"]
    assert t0["node"]


def test_failures_are_stored_and_search_goes_on(sqlite_url):
    result = _exp(sqlite_url, evaluator=toyspace.evaluate_flaky, algorithm="random",
                  space=toyspace.Point(x=0.5, y=pg.oneof([2, 3, 4]), kind="a")).run(
        max_trials=12, executor="local")
    df = result.trials()
    assert len(df) == 12
    raised = df[df["status"] == "failed"]["error"].str.contains("RuntimeError: cannot evaluate y=4")
    nan = df[df["status"] == "failed"]["error"].str.contains("non-finite values for \\['accuracy'\\]")
    assert raised.any() and nan.any() and (raised | nan).all()
    assert (df["status"] == "completed").any()


def test_missing_objective_lists_returned_metrics(sqlite_url):
    exp = _exp(sqlite_url, objectives={"acc": "max"})
    with pytest.raises(ConfigError, match="objective 'acc' is not among the metrics the evaluator "
                                          "returned: accuracy, params"):
        exp.run(max_trials=5, executor="local")
    # Refused before any trial finished with a result: nothing is left behind, so the
    # same name runs at once with the objective fixed (see tests/runner/test_claim.py).
    assert _exp(sqlite_url).run(max_trials=2, executor="local").counts() == {"completed": 2}


def test_run_continues_to_max_trials_and_replays(sqlite_url):
    _exp(sqlite_url).run(max_trials=5, executor="local")
    result = _exp(sqlite_url).run(max_trials=9, workers=2, executor="local")
    assert list(result.trials()["number"]) == list(range(9))
    result = _exp(sqlite_url).run(max_trials=9, executor="local")  # nothing left to do
    assert len(result.trials()) == 9


def test_pending_trials_are_rerun_not_duplicated(sqlite_url):
    _exp(sqlite_url, cache=False).run(max_trials=4, executor="local")
    s = Store(sqlite_url)
    exp_id = s.experiment("toy")["id"]
    victim = s.trial(exp_id, 2)
    s.update_trial(victim["id"], status="running", metrics={}, costs={})  # as if the driver died
    result = _exp(sqlite_url, cache=False).run(max_trials=5, executor="local")
    df = result.trials()
    assert list(df["number"]) == [0, 1, 2, 3, 4]
    assert set(df["status"]) == {"completed"}
    assert int(df.loc[df["number"] == 2, "attempt"].iloc[0]) == 2


def test_seeds_make_trials_reproducible(tmp_path):
    a = _exp(f"sqlite:///{tmp_path}/a.db", evaluator=toyspace.evaluate_seeded, seed=5)
    b = _exp(f"sqlite:///{tmp_path}/b.db", evaluator=toyspace.evaluate_seeded, seed=5)
    ra = a.run(max_trials=6, executor="local").trials()
    rb = b.run(max_trials=6, executor="local").trials()
    assert list(ra["accuracy"]) == list(rb["accuracy"])
    assert [json.dumps(d, sort_keys=True) for d in ra["decisions"]] == \
           [json.dumps(d, sort_keys=True) for d in rb["decisions"]]


def test_unknown_algorithm_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm 'evolutoin'"):
        _exp(f"sqlite:///{tmp_path}/x.db", algorithm="evolutoin")
    assert not (tmp_path / "x.db").exists()


def test_unreachable_store_fails_before_anything_is_written(tmp_path):
    with pytest.raises(StoreError, match="cannot open store 'sqlite:////nonexistent-dir/x.db'"):
        _exp("sqlite:////nonexistent-dir/x.db").run(max_trials=2, executor="local")
    with pytest.raises(StoreError, match=r"cannot open store 'postgresql\+psycopg://u:\*\*\*@127.0.0.1:9/x'"):
        _exp("postgresql+psycopg://u:p@127.0.0.1:9/x").run(max_trials=2, executor="local")


def test_changed_space_is_refused(sqlite_url):
    _exp(sqlite_url).run(max_trials=2, executor="local")
    other = _exp(sqlite_url, space=toyspace.Point(x=pg.floatv(0.0, 2.0), y=1, kind="a"))
    with pytest.raises(ConfigError, match="'toy' .* was run with a different search space"):
        other.run(max_trials=4, executor="local")
    assert len(memnas.load("toy", sqlite_url).trials()) == 2


@pytest.mark.parametrize("kw,match", [
    (dict(space=toyspace.Point(x=0.1, y=1, kind="a")), "space has no decisions"),
    (dict(space=42), "space has no decisions|not a PyGlove hyper value"),
    (dict(evaluator="evaluate"), "evaluator must be callable"),
    (dict(objectives={"accuracy": "up"}), "direction 'up'"),
    (dict(name=""), "experiment name must be"),
    (dict(resources={"gpus": 1}), "resources must be"),
])
def test_bad_experiment_arguments(sqlite_url, kw, match):
    with pytest.raises(ConfigError, match=match):
        _exp(sqlite_url, **kw)


def test_bad_run_arguments(sqlite_url):
    with pytest.raises(ConfigError, match="max_trials must be a positive integer, got 0"):
        _exp(sqlite_url).run(max_trials=0, executor="local")
    with pytest.raises(ConfigError, match="unknown executor 'threads'"):
        _exp(sqlite_url).run(max_trials=1, executor="threads")


def test_load_round_trip(sqlite_url):
    result = _exp(sqlite_url, algorithm="nsga2").run(max_trials=6, workers=2, executor="local")
    again = memnas.load("toy", store=sqlite_url)
    assert again.trials().drop(columns=["decisions"]).equals(result.trials().drop(columns=["decisions"]))
    assert again.objectives == {"accuracy": "max", "params": "min"}
    assert list(again.pareto_front()["number"]) == list(result.pareto_front()["number"])
    with pytest.raises(StoreError, match="no experiment named 'nope'"):
        memnas.load("nope", store=sqlite_url)
