"""A toy algorithm and evaluator that talk through the artifact channel (tests only)."""

from __future__ import annotations

import numpy as np
import pyglove as pg

import toyspace
from memnas.algorithms import AlgorithmHooks


class Chain(pg.geno.DNAGenerator, AlgorithmHooks):
    """Random DNA; each proposal carries the last output artifact's counter, plus one.

    It records what it saw, so tests can check the channel end to end.
    """

    def _setup(self) -> None:
        self._random = pg.geno.Random(seed=0)
        self._random.setup(self.dna_spec)
        self.counter = 0
        self.seen: list[int] = []

    def _propose(self) -> pg.DNA:
        return self._random.propose()

    def _feedback(self, dna: pg.DNA, reward: float) -> None:
        pass

    def _replay(self, trial_id: int, dna: pg.DNA, reward) -> None:
        self._random.propose()  # keep the random stream where it was

    def artifact_for(self, dna: pg.DNA) -> dict:
        return {"counter": np.array([self.counter], dtype=np.int64), "note": "from Chain"}

    def feedback_artifact(self, dna: pg.DNA, artifact: dict | None) -> None:
        if artifact is not None:
            self.counter = max(self.counter, int(artifact["weights"]["counter"][0]))
            self.seen.append(int(artifact["weights"]["counter"][0]))


def evaluate(p, ctx):
    """`toyspace.evaluate`, returning the input counter plus one as its artifact."""
    assert ctx.artifact is not None and ctx.artifact["note"] == "from Chain", ctx.artifact
    import memnas

    m = memnas.Measurement(metrics=toyspace.evaluate(p, ctx))
    m.artifact = {"weights": {"counter": ctx.artifact["counter"] + 1,
                              "w": np.full((3, 4), p.y, dtype=np.float32)}}
    return m
