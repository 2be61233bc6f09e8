"""Test of experiments/quickstart.py: every shipped mixer, the accuracy / state_bytes trade-off."""

from __future__ import annotations

import os

import pyglove as pg

from memnas.loader import load_experiment_file
from memnas.searchspace import Mixer, registered_mixers

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "quickstart.py")


def test_quickstart_searches_every_mixer_for_accuracy_against_state_bytes() -> None:
    experiment = load_experiment_file(PATH)
    assert dict(experiment.objectives) == {"accuracy": "max", "state_bytes": "min"}
    # Pinned by name in the file; a new mixer must be added there too. Every mixer the
    # space's choices hold (walking the space: sampling 300 candidates to find them took
    # 70-130 s, each decode of this space costs about 0.3 s).
    seen = set()

    def visit(key, value, parent):
        if isinstance(value, Mixer):
            seen.add(type(value).__name__)
        return pg.TraverseAction.ENTER

    pg.traverse(experiment.space, visit)
    assert seen == set(registered_mixers())
    for candidate in pg.random_sample(experiment.space, 3, seed=0):  # and candidates decode
        assert {type(block.mixer).__name__ for block in candidate.layers} <= seen
