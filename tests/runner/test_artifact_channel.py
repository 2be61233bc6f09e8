"""The artifact channel: algorithm -> evaluator (input) and evaluator -> algorithm (output)."""

import subprocess
import sys

import pytest

import artifactalgo
import memnas
import toyspace
from memnas.store import Store


def _exp(url, name="chain"):
    return memnas.Experiment(name=name, space=toyspace.point_space(),
                             evaluator=artifactalgo.evaluate, algorithm=artifactalgo.Chain(),
                             objectives={"accuracy": "max"}, store=url)


def test_artifacts_travel_both_ways_and_are_stored(store_url):
    result = _exp(store_url).run(max_trials=5, workers=1, executor="local")
    assert set(result.trials()["status"]) == {"completed"}
    # Sequential: trial k got counter k and returned k + 1.
    for k in range(5):
        assert int(result.artifact(k, "input")["counter"][0]) == k
        out = result.artifact(k)
        assert int(out["weights"]["counter"][0]) == k + 1
        assert out["weights"]["w"].shape == (3, 4)
    with pytest.raises(memnas.ConfigError, match="no trial 99"):
        result.artifact(99)


def test_trials_with_input_artifacts_bypass_the_equivalence_cache(sqlite_url):
    # Point(x fixed) has 8 distinct candidates; 12 trials would hit the cache without artifacts.
    import pyglove as pg

    exp = _exp(sqlite_url)
    exp.space = toyspace.Point(x=0.5, y=pg.oneof([1, 2]), kind="a")
    result = exp.run(max_trials=6, executor="local")
    assert set(result.trials()["status"]) == {"completed"}
    assert result.cache_counters()["hits"] == 0


def test_ray_workers_get_and_return_artifacts(sqlite_url):
    result = _exp(sqlite_url).run(max_trials=4, workers=2, executor="ray")
    assert set(result.trials()["status"]) == {"completed"}
    assert all(result.artifact(k) is not None for k in range(4))


def test_resume_replays_output_artifacts_before_recover(sqlite_url):
    _exp(sqlite_url).run(max_trials=3, executor="local")
    exp = _exp(sqlite_url)
    result = exp.run(max_trials=5, executor="local")
    # The resumed algorithm saw the 3 stored outputs first, so trial 3 got counter 3.
    assert int(result.artifact(3, "input")["counter"][0]) == 3
    assert int(result.artifact(4, "input")["counter"][0]) == 4
    store = Store(sqlite_url)
    assert len(store.trials(store.experiment("chain")["id"])) == 5


def test_tune_executor_carries_artifacts(sqlite_url):
    result = _exp(sqlite_url).run(max_trials=3, workers=1, executor="tune", scheduler="fifo")
    assert set(result.trials()["status"]) == {"completed"}
    assert int(result.artifact(2)["weights"]["counter"][0]) == 3
