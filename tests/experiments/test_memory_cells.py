"""Test of experiments/memory_cells.py: a search over memory cells whose isomorphs the cache answers."""

from __future__ import annotations

import dataclasses
import os

import pyglove as pg

import memnas
from memnas.loader import load_experiment_file
from memnas.searchspace import Cell
from memnas.store import Store

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "memory_cells.py")


def test_memory_cells_searches_cells_and_counts_hits_by_kind(tmp_path) -> None:
    experiment = load_experiment_file(PATH)
    assert dict(experiment.objectives) == {"accuracy": "max", "state_bytes": "min"}
    url = f"sqlite:///{tmp_path}/cells.db"
    quick = memnas.Experiment(  # the file's search, with a few training steps
        name="cells-quick", space=experiment.space, algorithm=experiment.algorithm,
        evaluator=dataclasses.replace(experiment.evaluator, steps=5, eval_examples=16),
        objectives=experiment.objectives, store=url)
    result = quick.run(max_trials=20, workers=1, executor="local")
    df = result.trials()
    assert len(df) == 20 and set(df["status"]) <= {"completed", "cached"}
    kinds = result.cache_kind_counts()
    assert sum(kinds["hit"].values()) + sum(kinds["attached"].values()) \
        == (df["status"] == "cached").sum()
    store = Store(url, read_only=True)
    for t in store.trials(store.experiment("cells-quick")["id"]):
        assert all(isinstance(b.mixer, Cell) for b in pg.from_json_str(t["candidate"]).layers)
