"""MCTS and the Optuna bridge driving a real Experiment (in-process executor), with resume."""

import pyglove as pg
import pytest

import memnas
import toyspace
from memnas.runner import dna_from_json
from memnas.store import Store


def _exp(url, algorithm, **kw):
    args = dict(name=f"toy-{algorithm}", space=toyspace.point_space(),
                evaluator=toyspace.evaluate, algorithm=algorithm,
                objectives={"accuracy": "max", "params": "min"}, store=url, seed=2)
    args.update(kw)
    return memnas.Experiment(**args)


@pytest.mark.parametrize("algorithm,options", [("mcts", {"bins": 4}),
                                               ("tpe", {"n_startup_trials": 4}),
                                               ("optuna_nsga2", {"population_size": 4})])
def test_search_resume_and_requeue(sqlite_url, algorithm, options):
    exp = _exp(sqlite_url, algorithm, algorithm_options=options)
    result = exp.run(max_trials=8, workers=2, executor="local")
    assert list(result.trials()["number"]) == list(range(8))
    # a trial "running" when the driver died is rerun after the algorithm recovers
    s = Store(sqlite_url)
    exp_id = s.experiment(exp.name)["id"]
    s.update_trial(s.trial(exp_id, 5)["id"], status="running", metrics={}, costs={})
    result = _exp(sqlite_url, algorithm, algorithm_options=options).run(
        max_trials=16, workers=2, executor="local")
    df = result.trials()
    assert list(df["number"]) == list(range(16))
    assert set(df["status"]) <= {"completed", "cached"}
    assert int(df.loc[df["number"] == 5, "attempt"].iloc[0]) == 2
    spec = pg.dna_spec(toyspace.point_space())
    for n in range(16):
        pg.materialize(toyspace.point_space(), dna_from_json(s.trial(exp_id, n)["dna"], spec))
