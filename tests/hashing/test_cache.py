"""The equivalence cache in the driver: hits, attached twins, cross-experiment reuse, averaging."""

import pyglove as pg
import pytest

import memnas
from cachetoys import Knob, Lin, lin_score, score, slow_score
from memnas.store import Store


def _exp(url, space, evaluator=score, name="c", **kw):
    return memnas.Experiment(name=name, space=space, evaluator=evaluator, algorithm="random",
                             objectives={"accuracy": "max"}, store=url, **kw)


def _counters(url, name):
    s = Store(url)
    return s.cache_counters(s.experiment(name)["id"])


def test_hits_reuse_the_stored_result_and_feed_the_algorithm(sqlite_url):
    space = Knob(a=pg.oneof([1, 2]), b=pg.oneof([1.0, 2.0, 3.0]))  # 2 distinct functions
    result = _exp(sqlite_url, space).run(max_trials=12, executor="local")
    df = result.trials().set_index("id")
    assert len(df) == 12
    assert (df["status"] == "completed").sum() == 2 and (df["status"] == "cached").sum() == 10
    for _, row in df[df["status"] == "cached"].iterrows():
        source = df.loc[int(row["cached_from"])]
        assert source["status"] == "completed" and source["sym_hash"] == row["sym_hash"]
        assert row["accuracy"] == source["accuracy"]
    c = _counters(sqlite_url, "c")
    assert c["misses"] == 2 and c["hits"] == 10 and c["attached"] == 0 and c["saved_s"] >= 0


def test_results_are_shared_across_experiments_with_the_same_evaluator(sqlite_url):
    space = Knob(a=pg.oneof([1, 2, 3]))
    _exp(sqlite_url, space, name="first").run(max_trials=6, executor="local")
    second = _exp(sqlite_url, space, name="second").run(max_trials=4, executor="local")
    assert set(second.trials()["status"]) == {"cached"}
    other = _exp(sqlite_url, space, name="other", evaluator=slow_score).run(max_trials=1, executor="local")
    assert set(other.trials()["status"]) == {"completed"}  # another evaluator: no reuse


def test_cache_off_evaluates_everything(sqlite_url):
    space = Knob(a=pg.oneof([1, 2]))
    result = _exp(sqlite_url, space, cache=False).run(max_trials=5, executor="local")
    assert set(result.trials()["status"]) == {"completed"}


def test_reevaluate_k_times_then_reuse_the_mean(sqlite_url):
    space = Knob(a=pg.oneof([4, 5]), b=3.0, mode="on")
    result = _exp(sqlite_url, space, reevaluate=3).run(max_trials=12, executor="local")
    df = result.trials()
    for a in (4, 5):
        rows = df[df["summary"].str.contains(f"a={a}")]
        evaluated = rows[rows["status"] == "completed"]
        cached = rows[rows["status"] == "cached"]
        assert len(evaluated) <= 3
        if len(cached):
            assert len(evaluated) == 3
            assert cached["accuracy"].iloc[0] == pytest.approx(evaluated["accuracy"].mean())


def test_functional_hash_finds_twins_that_differ_symbolically(sqlite_url):
    space = Lin(width=4, note=pg.oneof(["first", "second", "third"]))
    result = _exp(sqlite_url, space, evaluator=lin_score).run(max_trials=6, executor="local")
    df = result.trials()
    assert (df["status"] == "completed").sum() == 1
    assert df["fn_hash"].nunique() == 1 and df["sym_hash"].nunique() == 3


@pytest.mark.slow
def test_twin_in_flight_is_attached_not_launched(sqlite_url):
    space = Knob(a=pg.oneof([11, 12, 13]))  # one function: a saturates at 10
    result = _exp(sqlite_url, space, evaluator=slow_score).run(max_trials=6, workers=3,
                                                               executor="ray")
    df = result.trials()
    assert (df["status"] == "completed").sum() == 1
    c = _counters(sqlite_url, "c")
    assert c["misses"] == 1 and c["attached"] >= 1 and c["hits"] + c["attached"] == 5
    assert c["saved_s"] >= 0.5 * 5 * 0.9


def test_show_and_dashboard_print_the_counters(sqlite_url, monkeypatch):
    from click.testing import CliRunner
    from streamlit.testing.v1 import AppTest

    from memnas.cli import main
    from memnas.dashboard import app_path

    _exp(sqlite_url, Knob(a=pg.oneof([1, 2]))).run(max_trials=5, executor="local")
    r = CliRunner().invoke(main, ["show", "c", "--store", sqlite_url])
    assert "equivalence cache: 2 evaluated, 3 hits (3 duplicate), 0 attached" in r.output
    monkeypatch.setenv("MEMNAS_STORE", sqlite_url)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.query_params["experiment"] = "c"
    at.switch_page("views/experiment.py").run()
    assert not at.exception
    assert any("Equivalence cache: 2 evaluated, 3 hits" in c.value for c in at.caption)
