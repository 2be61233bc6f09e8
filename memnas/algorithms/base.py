"""The hooks memnas calls on an algorithm beyond PyGlove's `DNAGenerator`, with no-op defaults."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import dataclasses

import pyglove as pg


@dataclasses.dataclass(frozen=True)
class Rung:
    """A multi-fidelity trial's place: its budget, the trial it continues, its cost.

    Attributes:
      budget: merged over the experiment's ``budget`` into ``ctx.budget`` (e.g.
        ``{"steps": 100, "max_steps": 400}``).
      continues: the DNA object of the earlier proposal whose checkpoint this trial
        resumes (``ctx.resume``), or None for a trial from scratch.
      checkpoint: whether the trial may be continued later (``ctx.checkpoint``).
      cost: budget units the trial is expected to spend (its budget less the one it
        continues from); counted against ``max_cost`` until its evaluator reports
        ``budget_spent``.
    """

    budget: Mapping[str, Any]
    continues: pg.DNA | None = None
    checkpoint: bool = False
    cost: float = 0.0


class AlgorithmHooks:
    """What the driver asks of an algorithm besides ``propose``/``feedback``/``recover``.

    A memnas algorithm is a ``pg.geno.DNAGenerator`` (subclasses write ``_setup``,
    ``_propose``, ``_feedback``, as PyGlove documents). One that needs more than a
    reward also derives from this class and overrides what it needs, as Optuna's
    samplers override ``BaseSampler.before_trial/after_trial``; a plain generator gets
    these defaults through `hooks_of`.

    The artifact channel (IMP needs trained weights and gives masks; sharpDARTS gets
    architecture weights back):

    - `artifact_for` is called once per proposal; its payload is stored as the trial's
      ``input`` artifact and handed to the evaluator as ``ctx.artifact``. A trial with
      an input artifact bypasses the equivalence cache (its result depends on more than
      its candidate).
    - `feedback_artifact` gets the evaluator's ``Measurement.artifact`` (stored as the
      ``output`` artifact) just before ``feedback(dna, reward)``; on resume, for every
      finished trial in order, before ``recover(history)``.
    - `waiting`: while true, ``propose`` raising ``StopIteration`` means "nothing until
      a running trial reports back" (sharpDARTS derives its architecture from the
      supernet trial's output), so the driver waits instead of ending the search.
    - `check_evaluator`: called when an `memnas.Experiment` is made, to refuse an
      evaluator the algorithm cannot work with (sharpDARTS needs a supernet evaluator).

    Multi-fidelity (`memnas.algorithms.fidelity`): `rung_of` is called once per
    proposal after `artifact_for` (and again for a trial run again after a crash); its
    `Rung` gives the trial's budget and the earlier proposal it continues, whose stored
    output artifact reaches the evaluator as ``ctx.resume``. `budget_unit` names the
    budget key the rungs count in (``max_cost`` is in its units).

    `bind` is called once after ``setup`` with the experiment's objectives and a
    function giving a DNA's costs known before training (the evaluator's ``costs``
    hook; None when the evaluator has none): LINAS computes those instead of
    predicting them.
    """

    @property
    def waiting(self) -> bool:
        """True while the algorithm proposes nothing until a running trial reports back."""
        return False

    def artifact_for(self, dna: pg.DNA) -> dict[str, Any] | None:
        """The evaluator's input payload for the trial of ``dna``; None: none."""
        return None

    def feedback_artifact(self, dna: pg.DNA, artifact: dict[str, Any] | None) -> None:
        """Receives the evaluator's output artifact (None if it returned none)."""

    def rung_of(self, dna: pg.DNA) -> Rung | None:
        """The multi-fidelity rung of the trial of ``dna``; None: a plain trial."""
        return None

    @property
    def budget_unit(self) -> str | None:
        """The budget key a multi-fidelity algorithm's rungs count in; None: not one."""
        return None

    def bind(self, objectives: Mapping[str, str],
             costs: Callable[[pg.DNA], Mapping[str, float]] | None) -> None:
        """Receives the objectives (``{name: "max"|"min"}``, in reward order) and a
        function giving a DNA's costs before training (None: the evaluator has none)."""

    def warm_start(self, history: Any) -> None:
        """Learns from earlier experiments' ``(dna, reward)`` before the first proposal;
        by default PyGlove's ``recover`` (which may be called for several histories)."""
        self.recover(history)  # type: ignore[attr-defined]  # on a pg.geno.DNAGenerator

    def check_evaluator(self, evaluator: Any) -> None:
        """Refuses an evaluator this algorithm cannot search with; accepts any by default.

        Raises:
          ConfigError: the evaluator cannot serve this algorithm; one line naming it.
        """


_DEFAULTS = AlgorithmHooks()


def hooks_of(algorithm: Any) -> AlgorithmHooks:
    """``algorithm`` itself when it declares the hooks, else the no-op defaults."""
    return algorithm if isinstance(algorithm, AlgorithmHooks) else _DEFAULTS
