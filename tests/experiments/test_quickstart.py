"""Test of experiments/quickstart.py: every shipped mixer, the accuracy / state_bytes trade-off."""

from __future__ import annotations

import os

import pyglove as pg

from memnas.loader import load_experiment_file
from memnas.searchspace import registered_mixers

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "quickstart.py")


def test_quickstart_searches_every_mixer_for_accuracy_against_state_bytes() -> None:
    experiment = load_experiment_file(PATH)
    assert dict(experiment.objectives) == {"accuracy": "max", "state_bytes": "min"}
    # Pinned by name in the file; a new mixer must be added there too.
    seen = set()
    for candidate in pg.random_sample(experiment.space, 300, seed=0):
        seen.update(type(block.mixer).__name__ for block in candidate.layers)
    assert seen == set(registered_mixers())
