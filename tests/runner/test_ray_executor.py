"""The Ray executor end to end: a real local Ray runtime into a temporary SQLite store."""

import pyglove as pg
import pytest

import memnas
import toyspace
from memnas.store import Store

pytestmark = pytest.mark.slow


def test_toy_search_on_ray_stores_every_row(sqlite_url):
    exp = memnas.Experiment(name="ray-toy", space=toyspace.point_space(),
                            evaluator=toyspace.evaluate_flaky, algorithm="nsga2",
                            objectives={"accuracy": "max", "params": "min"}, store=sqlite_url,
                            resources={"num_cpus": 0.5})
    result = exp.run(max_trials=10, workers=2, executor="ray")
    df = result.trials()
    assert list(df["number"]) == list(range(10))
    assert set(df["status"]) <= {"completed", "failed"}
    assert df["node"].notna().all()
    failed = df[df["status"] == "failed"]
    assert failed["error"].str.contains("RuntimeError: cannot evaluate|non-finite").all()
    s = Store(sqlite_url)
    exp_row = s.experiment("ray-toy")
    assert exp_row["status"] == "completed"
    done = s.trials(exp_row["id"], statuses=["completed"])
    assert all(len(s.curve(t["id"])) == 3 for t in done)
