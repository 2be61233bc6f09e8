"""The hooks memnas calls on an algorithm beyond PyGlove's `DNAGenerator`, with no-op defaults."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pyglove as pg


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

    Multi-fidelity (`memnas.algorithms.fidelity`), called once per proposal after
    `artifact_for`:

    - `budget_for`: the trial's budget, merged over the experiment's ``budget`` into
      ``ctx.budget`` (e.g. ``{"steps": 100, "max_steps": 400}``); None: the experiment's.
    - `continues`: the DNA object of an earlier proposal this trial continues (a lower
      rung of the same candidate); its stored output artifact reaches the evaluator as
      ``ctx.resume``. None: a trial from scratch.

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

    def budget_for(self, dna: pg.DNA) -> Mapping[str, Any] | None:
        """The budget of the trial of ``dna`` over the experiment's; None: the experiment's."""
        return None

    def continues(self, dna: pg.DNA) -> pg.DNA | None:
        """The earlier proposal (its DNA object) the trial of ``dna`` continues; None: none."""
        return None

    def bind(self, objectives: Mapping[str, str],
             costs: Callable[[pg.DNA], Mapping[str, float]] | None) -> None:
        """Receives the objectives (``{name: "max"|"min"}``, in reward order) and a
        function giving a DNA's costs before training (None: the evaluator has none)."""

    def check_evaluator(self, evaluator: Any) -> None:
        """Refuses an evaluator this algorithm cannot search with; accepts any by default.

        Raises:
          ConfigError: the evaluator cannot serve this algorithm; one line naming it.
        """


_DEFAULTS = AlgorithmHooks()


def hooks_of(algorithm: Any) -> AlgorithmHooks:
    """``algorithm`` itself when it declares the hooks, else the no-op defaults."""
    return algorithm if isinstance(algorithm, AlgorithmHooks) else _DEFAULTS
