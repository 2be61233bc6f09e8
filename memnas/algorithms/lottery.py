"""`LotteryTicketIMP`: iterative magnitude pruning with rewinding (Frankle & Carbin 2019)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyglove as pg

from memnas.algorithms.base import AlgorithmHooks
from memnas.algorithms.registry import register_algorithm
from memnas.errors import ConfigError

ROLES = ("imp", "reinit", "random_prune")
CONTROLS = ROLES[1:]


def lottery_space(parent: Any, rounds: int = 20, rate: float = 0.2, scope: str = "layer",
                  output_rate: float = 0.0) -> Any:
    """The space `LotteryTicketIMP` walks: one `SparseNet` per (round, role) of ``parent``.

    ``sparsity`` is one of the nominal levels ``1 - (1 - rate) ** r`` (the trial's
    measured ``sparsity`` is the exact one), ``criterion`` tells IMP tickets
    (``magnitude``) from random pruning (``random``), ``init`` the original or rewound
    weights from random re-initialisation (``reinit``).
    """
    from memnas.searchspace.sparse import SparseNet

    levels = [round(1 - (1 - rate) ** r, 6) for r in range(rounds)]
    return SparseNet(parent=parent, sparsity=pg.oneof(levels),
                     criterion=pg.oneof(["magnitude", "random"]),
                     init=pg.oneof(["original", "reinit"]), scope=scope, output_rate=output_rate)


@pg.members([
    ("seed", pg.typing.Int(default=0), "Seed of the chains' initial weights, data orders and "
                                       "random masks."),
    ("chains", pg.typing.Int(min_value=1, default=1), "Independent IMP runs (seeds)."),
    ("rounds", pg.typing.Int(min_value=1, default=10), "Rounds per chain, the dense one "
                                                       "(round 0) included."),
    ("rate", pg.typing.Float(min_value=0.0, max_value=1.0, default=0.2),
     "Fraction of the remaining weights pruned each round."),
    ("scope", pg.typing.Enum("layer", ["layer", "global"]), "Per-layer or global pruning."),
    ("output_rate", pg.typing.Float(min_value=0.0, default=0.0),
     "The output layer is pruned at output_rate * rate: 0 keeps it dense (default), 0.5 is "
     "OpenLTH's half rate."),
    ("rewind_step", pg.typing.Int(min_value=0, default=0),
     "Rewind survivors to their values at this training step (0: initial values; k > 0: "
     "late rewinding, Frankle et al. 2020)."),
    ("controls", pg.typing.List(pg.typing.Enum("reinit", list(CONTROLS)), default=[]),
     "Controls run at every round's sparsity beside the ticket: 'reinit' (the ticket's mask, "
     "fresh random weights) and 'random_prune' (a random mask with the ticket's per-layer "
     "counts, the ticket's rewind weights)."),
])
class LotteryTicketIMP(pg.geno.DNAGenerator, AlgorithmHooks):
    """Lottery-ticket iterative magnitude pruning as a memnas algorithm.

    Each chain trains its dense network (round 0), then repeatedly prunes ``rate`` of
    the remaining weights by magnitude (per layer or globally; the output layer kept
    dense unless ``output_rate`` > 0), rewinds the survivors to their initial values
    (or to step ``rewind_step``) and trains again. Every training run is one trial:

    - its DNA picks the round's nominal sparsity, criterion and init in
      `lottery_space` and carries ``{"chain", "round", "role"}`` as DNA metadata;
    - its input artifact holds what the evaluator (`SparseTrainEvaluator`) needs:
      ``masks``, rewind ``weights``, ``start_step``, ``init_seed``, ``data_seed``;
    - its output artifact holds the masks used, trained ``final`` weights and (round 0)
      the ``rewind`` weights, from which the next round's masks are computed.

    Input and output artifacts go through the `AlgorithmHooks` channel. The algorithm
    keeps no state that is not derived from output artifacts, so a resumed search
    continues exactly. Chains and controls are independent proposals: with several
    workers they run side by side. It is ``waiting`` while every proposal that can run
    is running and a later round is still to come. A failed ticket trial ends its chain.
    The reward is not used; an accuracy-vs-remaining-weights Pareto front is the result.
    """

    def _setup(self) -> None:
        self._points = _decision_points(self.dna_spec)
        self._levels = self._sparsity_levels()
        self._queue: list[tuple[int, int, str]] = [(c, 0, "imp") for c in range(self.chains)]
        self._running: set[tuple[int, int]] = set()       # ticket trials awaiting feedback
        self._rewind: dict[int, dict[str, np.ndarray]] = {}
        self._masks: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._order: dict[int, list[str]] = {}

    # -- DNAGenerator ----------------------------------------------------------------
    def _propose(self) -> pg.DNA:
        if not self._queue:
            raise StopIteration()
        chain, rnd, role = self._queue.pop(0)
        if role == "imp":
            self._running.add((chain, rnd))
        return self._dna(chain, rnd, role)

    def _feedback(self, dna: pg.DNA, reward: Any) -> None:
        chain, rnd, role = _key(dna)
        if role == "imp":
            self._running.discard((chain, rnd))

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        key = _key(dna)
        if key in self._queue:
            self._queue.remove(key)
        if key[2] == "imp" and reward is None:
            self._running.add(key[:2])   # still to be run again (or failed)

    @property
    def waiting(self) -> bool:
        """True while nothing can be proposed until a running ticket trial reports back."""
        return not self._queue and any(r + 1 < self.rounds for _, r in self._running)

    # -- artifact channel --------------------------------------------------------------
    def artifact_for(self, dna: pg.DNA) -> dict[str, Any]:
        """The evaluator's instructions for this trial (see the class docstring)."""
        chain, rnd, role = _key(dna)
        base = {"data_seed": _seed(self.seed, chain, "data"),
                "init_seed": _seed(self.seed, chain, "init")}
        if role == "imp" and rnd == 0:
            return {**base, "rewind_step": self.rewind_step, "return_weights": True}
        masks = self._masks[(chain, rnd)]
        if role == "reinit":
            return {**base, "masks": masks, "init_seed": _seed(self.seed, chain, "reinit", rnd)}
        if role == "random_prune":
            masks = random_masks_like(masks, _seed(self.seed, chain, "random", rnd))
        return {**base, "masks": masks, "weights": self._rewind[chain],
                "start_step": self.rewind_step, "return_weights": role == "imp"}

    def feedback_artifact(self, dna: pg.DNA, artifact: dict[str, Any] | None) -> None:
        """Takes a ticket trial's trained weights: computes and queues the next round.

        Raises:
          ConfigError: a ticket trial came back without weights (the evaluator must
            return them, as `SparseTrainEvaluator` does when asked).
        """
        chain, rnd, role = _key(dna)
        if role != "imp":
            return
        if not artifact or artifact.get("final") is None or artifact.get("masks") is None:
            raise ConfigError(f"LotteryTicketIMP: trial {dna.metadata!r} returned no weights; "
                              "use an evaluator that returns {'masks', 'final', 'rewind'} "
                              "(memnas.evaluators.sparse_training.SparseTrainEvaluator)")
        order = list(artifact.get("prunable") or artifact["masks"])
        if rnd == 0:
            if artifact.get("rewind") is None:
                raise ConfigError(f"LotteryTicketIMP: round 0 of chain {chain} returned no "
                                  f"rewind weights for step {self.rewind_step}")
            self._rewind[chain] = dict(artifact["rewind"])
            self._order[chain] = order
        self._masks[(chain, rnd + 1)] = next_masks(
            artifact["final"], artifact["masks"], order, self.rate, self.scope, self.output_rate)
        if rnd + 1 < self.rounds:
            self._queue.append((chain, rnd + 1, "imp"))
            self._queue.extend((chain, rnd + 1, c) for c in self.controls)

    # -- insides -----------------------------------------------------------------------
    def _dna(self, chain: int, rnd: int, role: str) -> pg.DNA:
        values = {"sparsity": self._levels[rnd],
                  "criterion": 1 if role == "random_prune" else 0,
                  "init": 1 if role == "reinit" else 0}
        dna = pg.DNA.from_numbers([values[name] for name in self._points], self.dna_spec)
        dna.set_metadata("chain", chain)
        dna.set_metadata("round", rnd)
        dna.set_metadata("role", role)
        return dna

    def _sparsity_levels(self) -> list[int]:
        if "sparsity" not in self._points:
            raise ConfigError("LotteryTicketIMP needs a space with a sparsity decision; build "
                              "it with memnas.algorithms.lottery.lottery_space(parent, ...)")
        point = self.dna_spec[self._points.index("sparsity")]
        levels = [float(c) for c in point.literal_values]
        out = []
        for r in range(self.rounds):
            nominal = 1 - (1 - self.rate) ** r
            best = int(np.argmin([abs(v - nominal) for v in levels]))
            if abs(levels[best] - nominal) > 1e-4:
                raise ConfigError(f"LotteryTicketIMP: the space has no sparsity level for round "
                                  f"{r} ({nominal:.4f}); levels are {levels}: build it with "
                                  f"lottery_space(parent, rounds={self.rounds}, rate={self.rate})")
            out.append(best)
        for name, need in (("criterion", "random_prune"), ("init", "reinit")):
            if need in self.controls and name not in self._points:
                raise ConfigError(f"LotteryTicketIMP: control {need!r} needs a {name!r} decision "
                                  "in the space (see lottery_space)")
        return out


def next_masks(final: dict[str, Any], masks: dict[str, Any], order: list[str], rate: float,
               scope: str = "layer", output_rate: float = 0.0) -> dict[str, np.ndarray]:
    """One IMP step: prune ``rate`` of the kept weights by trained magnitude.

    Args:
      final: Trained weights (name -> array).
      masks: The masks they were trained under.
      order: Prunable names in module order; the last is the output layer.
      rate: Fraction of the kept weights to remove.
      scope: ``"layer"`` or ``"global"``.
      output_rate: Multiplier of ``rate`` for the output layer.
    """
    import torch

    from memnas.searchspace.sparse import prune

    current = {n: torch.from_numpy(np.array(masks[n], dtype=bool)) for n in order}
    weights = {n: torch.from_numpy(np.array(final[n])) for n in order}
    new = prune(weights, current, rate, scope=scope, criterion="magnitude", output=order[-1],
                output_rate=output_rate)
    out = {n: np.asarray(masks[n], dtype=bool) for n in masks}
    out.update({n: m.numpy() for n, m in new.items()})
    return out


def random_masks_like(masks: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Random masks with the same number of kept weights per layer as ``masks``."""
    import torch

    from memnas.searchspace.sparse import random_like

    gen = torch.Generator().manual_seed(seed)
    tensors = {n: torch.from_numpy(np.array(m, dtype=bool)) for n, m in masks.items()}
    return {n: m.numpy() for n, m in random_like(tensors, gen).items()}


def _decision_points(spec: pg.DNASpec) -> list[str]:
    names = []
    for dp in spec.decision_points:
        name = str(dp.location)
        if name not in ("sparsity", "criterion", "init") or not isinstance(dp, pg.geno.Choices):
            raise ConfigError(f"LotteryTicketIMP prunes one fixed parent; the space has a "
                              f"decision at {name!r} besides sparsity/criterion/init; build it "
                              "with memnas.algorithms.lottery.lottery_space(parent, ...)")
        names.append(name)
    return names


def _key(dna: pg.DNA) -> tuple[int, int, str]:
    meta = dna.metadata or {}
    if not {"chain", "round", "role"} <= set(meta):
        raise ConfigError(f"LotteryTicketIMP: DNA {dna!r} lacks chain/round/role metadata; "
                          "it was not proposed by LotteryTicketIMP")
    return int(meta["chain"]), int(meta["round"]), str(meta["role"])


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@register_algorithm("imp")
def lottery_ticket_imp(seed: int | None = None, **options: Any) -> LotteryTicketIMP:
    """Lottery-ticket IMP (see `LotteryTicketIMP`); options are its fields."""
    return LotteryTicketIMP(seed=0 if seed is None else seed, **options)
