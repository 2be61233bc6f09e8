"""`SharpDARTS`: differentiable weight-sharing search (sharpDARTS, Hundt et al. 2019)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyglove as pg

from memnas.algorithms._supernet import DEFAULT_RULES, WEIGHTINGS, decision_ids, derive, \
    resolve, walk_decisions
from memnas.algorithms._supernet_train import REQUEST_KEY, SupernetEvaluator, SupernetSettings
from memnas.algorithms.base import AlgorithmHooks
from memnas.errors import ConfigError

__all__ = ["SharpDARTS", "SupernetEvaluator"]

ROLE = "sharp_darts"  # DNA metadata key: "supernet" or "derived"


@pg.members([
    ("seed", pg.typing.Int().noneable(), "Unused: the supernet's seed is its trial's seed."),
    ("rounds", pg.typing.Int(min_value=1, default=1),
     "Supernet searches, each from its own trial seed and followed by its derived candidate."),
    ("weighting", pg.typing.Enum("softmax", list(WEIGHTINGS)),
     "How a mixed operation weights its choices: 'softmax' (DARTS) or 'max_w' (sharpDARTS)."),
    ("epochs", pg.typing.Int(min_value=1, default=10), "Supernet training epochs."),
    ("steps_per_epoch", pg.typing.Int(min_value=1, default=40),
     "Weight (and alpha) steps per epoch."),
    ("batch_size", pg.typing.Int(min_value=1).noneable(),
     "Batch size; None: the task evaluator's."),
    ("lr", pg.typing.Float(min_value=0.0, default=3e-3), "Peak weight learning rate (AdamW)."),
    ("min_lr", pg.typing.Float(min_value=0.0, default=1e-4), "Final weight learning rate."),
    ("exponent_order", pg.typing.Float(min_value=0.0, default=10.0),
     "Cosine Power Annealing order (1: plain cosine annealing)."),
    ("arch_lr", pg.typing.Float(min_value=0.0, default=1e-2), "Adam learning rate of the alphas."),
    ("arch_weight_decay", pg.typing.Float(min_value=0.0, default=1e-3), "L2 on the alphas."),
    ("warmup_epochs", pg.typing.Int(min_value=0, default=0), "Epochs training weights only."),
    ("first_order", pg.typing.Bool(default=True),
     "First-order DARTS (True) or the second-order approximation (False)."),
    ("default", pg.typing.Enum("first", list(DEFAULT_RULES)),
     "Value of decisions that are not mixed: their first or last choice."),
    ("fixed", pg.typing.Any(default=None),
     "{decision name or id: choice index (k indices for a manyof, a value for a float)}."),
])
class SharpDARTS(pg.geno.DNAGenerator, AlgorithmHooks):
    """sharpDARTS over any PyGlove space whose `oneof`/`manyof` decisions choose modules.

    Each round is two trials. The first is the supernet run: its DNA (metadata
    ``{"sharp_darts": "supernet"}``) takes every decision by the ``default``/``fixed``
    rule, and its input artifact asks the evaluator (a `SupernetEvaluator`) to train
    the supernet of the space, where each module decision is a mixed operation, with
    these settings: bilevel (weights on training batches, alphas on validation
    batches), Cosine Power Annealing, Max-W or softmax weighting. Its curves (loss,
    accuracy, ``alpha/<decision>/<choice>``: the softmax of the alphas, per epoch) and
    its output artifact (final alphas and their trajectory) are stored with the
    trial. The second trial is the derived architecture (argmax per decision, top k
    for a `manyof`; metadata ``"derived"``), evaluated by the task evaluator like any
    candidate, equivalence cache included. The supernet trial's metrics are those of
    the mixed network, marked ``supernet=1``; leave it out when ranking candidates.

    The generator holds only this decision logic; the training lives in the
    evaluator, and the two talk through the `AlgorithmHooks` artifact channel. It is
    ``waiting`` once all its supernets are proposed, no derived DNA is queued and a
    supernet is still running; in plain ``pg.sample`` it proposes the supernet DNA
    only. `recover` rebuilds it from the stored trials (the DNA metadata tells the
    roles apart).

    Example::

      space = memory_space(64, max_len=16, ...)
      memnas.Experiment(name="darts", space=space, algorithm=SharpDARTS(epochs=8),
                        evaluator=SupernetEvaluator(TrainEvaluator(task=MQAR(...)), space))
    """

    def _setup(self) -> None:
        for dp in self.dna_spec.decision_points:
            if not isinstance(dp, (pg.geno.Choices, pg.geno.Float)):
                raise ConfigError(f"SharpDARTS handles oneof/manyof/floatv decisions, got "
                                  f"{type(dp).__name__} at {str(dp.id)!r}")
        self._fixed = {str(k): (list(v) if isinstance(v, (list, tuple)) else v)
                       for k, v in dict(self.fixed or {}).items()}
        self._supernets = 0  # supernet trials proposed
        self._ready: list[pg.DNA] = []  # derived DNA not yet proposed
        self._reported = 0  # supernet outputs received
        self.history: list[dict[str, Any]] = []  # per round: alphas, derived DNA, reward

    @property
    def waiting(self) -> bool:
        """True while nothing can be proposed until a running supernet trial reports back."""
        return not self._ready and self._supernets >= self.rounds and \
            self._reported < self._supernets

    def supernet_dna(self, round_: int) -> pg.DNA:
        """The DNA of round ``round_``'s supernet trial: every decision by the fixed rule."""
        dna = walk_decisions(self.dna_spec, lambda dp: resolve(dp, self._fixed, self.default))
        dna.set_metadata(ROLE, "supernet")
        dna.set_metadata("round", round_)
        return dna

    def _propose(self) -> pg.DNA:
        if self._ready:
            return self._ready.pop(0)
        if self._supernets < self.rounds:
            self._supernets += 1
            return self.supernet_dna(self._supernets - 1)
        raise StopIteration()

    def _feedback(self, dna: pg.DNA, reward: Any) -> None:
        if dna.metadata.get(ROLE) == "derived":
            for h in self.history:
                if h["round"] == dna.metadata.get("round"):
                    h["reward"] = reward

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        role = dna.metadata.get(ROLE)
        if role == "supernet":
            self._supernets += 1
        elif role == "derived":
            round_ = dna.metadata.get("round")
            self._ready = [d for d in self._ready if d.metadata.get("round") != round_]
        if reward is not None:
            self._feedback(dna, reward)

    def check_evaluator(self, evaluator: Any) -> None:
        """Refuses an evaluator that trains no supernet: with one, the supernet trial
        would be an ordinary trial of the default architecture and nothing is derived.

        Raises:
          ConfigError: ``evaluator`` is not a `SupernetEvaluator`.
        """
        if not isinstance(evaluator, SupernetEvaluator):
            raise ConfigError(f"algorithm sharp_darts needs evaluator=SupernetEvaluator(task_"
                              f"evaluator, space), got {type(evaluator).__name__}: "
                              f"{evaluator!r:.60}")

    # -- the artifact channel ---------------------------------------------------------
    def artifact_for(self, dna: pg.DNA) -> dict[str, Any] | None:
        """The supernet request for a supernet DNA; None for a derived one."""
        if dna.metadata.get(ROLE) != "supernet":
            return None
        settings = SupernetSettings(
            epochs=self.epochs, steps_per_epoch=self.steps_per_epoch,
            batch_size=self.batch_size, lr=self.lr, min_lr=self.min_lr,
            exponent_order=self.exponent_order, arch_lr=self.arch_lr,
            arch_weight_decay=self.arch_weight_decay, warmup_epochs=self.warmup_epochs,
            first_order=self.first_order, weighting=self.weighting)
        return {REQUEST_KEY: {
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if v is not None},
            "default": self.default, "fixed": [[k, v] for k, v in self._fixed.items()],
            "round": int(dna.metadata.get("round", 0))}}

    def feedback_artifact(self, dna: pg.DNA, artifact: dict[str, Any] | None) -> None:
        """Derives the architecture from a supernet trial's alphas and queues it."""
        if dna.metadata.get(ROLE) != "supernet" or not artifact or "alphas" not in artifact:
            return
        alphas = {d["id"]: np.asarray(artifact["alphas"][f"d{i}"])
                  for i, d in enumerate(artifact["decisions"])}
        known = decision_ids(self.dna_spec)
        unknown = sorted(set(alphas) - known)
        if unknown:
            raise ConfigError(f"the supernet's decisions {unknown} are not in this space; "
                              "give SupernetEvaluator the experiment's space")
        derived = derive(self.dna_spec, alphas, self._fixed, self.default)
        round_ = int(dna.metadata.get("round", 0))
        derived.set_metadata(ROLE, "derived")
        derived.set_metadata("round", round_)
        self._reported += 1
        self._ready.append(derived)
        self.history.append({"round": round_, "alphas": alphas, "derived": derived,
                             "reward": None})

