"""Optuna samplers (TPE, CMA-ES, GP, NSGA-II) searching PyGlove spaces through ask/tell."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import math
import warnings
from typing import Any, Callable, Sequence

import pyglove as pg

from memnas.algorithms._decisions import check_supported, dna_key
from memnas.algorithms.registry import register_algorithm
from memnas.errors import ConfigError

# sampler name -> Optuna class name
SAMPLERS = {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
            "nsga2": "NSGAIISampler", "random": "RandomSampler"}

# (param name, Optuna distribution, candidate index of each categorical option or None) -> answer
_Ask = Callable[[str, Any, Sequence[int] | None], Any]


def _param_name(dp: pg.geno.DecisionPoint) -> str:
    return str(dp.id) or "(root)"


def _walk(spec: pg.DNASpec, ask: _Ask, out: list) -> None:
    """Asks the decisions of ``spec`` in define-by-run order; appends DNA numbers to ``out``.

    A `oneof` is a categorical over candidate indices, and its chosen branch is
    asked only then. A `manyof` of k is k categoricals asked first, the i-th over
    indices into the candidates still allowed (``n - i`` of them when distinct, all
    n otherwise), so each parameter keeps one distribution; the picks are sorted
    when the spec says so, and then each pick's branch is asked. A `floatv` is a
    float (log-scaled for ``scale='log'``). Parameters are named by decision ids.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if spec.is_space:
        for element in spec.elements:
            _walk(element, ask, out)
    elif isinstance(spec, pg.geno.Choices):
        n = len(spec.candidates)
        subs = [spec] if spec.num_choices == 1 else list(spec.choice_specs)
        picks: list[int] = []
        for i, sub in enumerate(subs):
            options = [c for c in range(n) if not (spec.distinct and c in picks)]
            j = ask(_param_name(sub), CategoricalDistribution(list(range(len(options)))), options)
            picks.append(options[j])
        if spec.sorted:
            picks.sort()
        for sub, c in zip(subs, picks):
            out.append(c)
            _walk(sub.candidates[c], ask, out)
    else:
        lo, hi = spec.min_value, spec.max_value
        out.append(float(ask(_param_name(spec),
                             FloatDistribution(lo, hi, log=spec.scale == "log" and lo > 0), None)))


@pg.members([
    ("sampler", pg.typing.Any(default=None),
     "An optuna.samplers.BaseSampler (copied at setup), a name in SAMPLERS, or None for TPE."),
    ("seed", pg.typing.Int().noneable(), "Seed of a sampler given by name."),
    ("num_objectives", pg.typing.Int(min_value=1, default=1),
     "Number of objectives; more than one makes the study (and generator) multi-objective."),
    ("sampler_options", pg.typing.Dict([(pg.typing.StrKey(), pg.typing.Any())]),
     "Keyword options for a sampler given by name."),
])
class OptunaSampler(pg.geno.DNAGenerator):
    """Any Optuna sampler searching a PyGlove space, through ask/tell on an in-memory study.

    Each proposal asks a trial of the study and walks the space define-by-run (see
    `_walk`): categoricals for `oneof`/`manyof` choices, floats for `floatv`, a
    conditional branch's decisions only when the branch is chosen. Parameters are
    named by the decisions' id paths (``"a"``, ``"a[=1/3].x"``, ``"m[1]"``). The
    proposal stays an open trial until its feedback tells the study its value(s);
    several may be in flight, matched by DNA. All directions are "maximize"
    (memnas rewards are larger-is-better); with ``num_objectives > 1`` the reward is
    a tuple of that length.

    `recover` adds each fed-back history entry as a finished trial (with the
    parameters its DNA encodes); entries without a reward are not opened again: if
    their feedback comes later, it is added as a finished trial then, like any DNA
    this generator did not propose.

    Setting up lowers Optuna's log level to WARNING (one INFO line per trial
    otherwise).
    """

    def _on_bound(self) -> None:
        super()._on_bound()
        if isinstance(self.sampler, str) and self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown Optuna sampler {self.sampler!r}; expected one of "
                              f"{sorted(SAMPLERS)} or an optuna.samplers.BaseSampler")

    @property
    def multi_objective(self) -> bool:
        return self.num_objectives > 1

    def _setup(self) -> None:
        import optuna

        check_supported(self.dna_spec, "OptunaSampler")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(sampler=self._make_sampler(),
                                          directions=["maximize"] * self.num_objectives)
        self._open: dict[tuple, list[Any]] = {}

    def _make_sampler(self) -> Any:
        import optuna

        if self.sampler is None or isinstance(self.sampler, str):
            cls = getattr(optuna.samplers, SAMPLERS[self.sampler or "tpe"], None)
            if cls is None:
                raise ConfigError(f"Optuna {optuna.__version__} has no "
                                  f"{SAMPLERS[self.sampler]}; upgrade optuna")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return cls(seed=self.seed, **self.sampler_options)
        if not isinstance(self.sampler, optuna.samplers.BaseSampler):
            raise ConfigError(f"sampler must be an optuna.samplers.BaseSampler or a name in "
                              f"{sorted(SAMPLERS)}, got {type(self.sampler).__name__}")
        return copy.deepcopy(self.sampler)

    @property
    def study(self) -> Any:
        """The Optuna study behind the proposals (set up only)."""
        return self._study

    # -- DNAGenerator ----------------------------------------------------------------
    def _propose(self) -> pg.DNA:
        trial = self._study.ask()

        def ask(name: str, dist: Any, options: Sequence[int] | None) -> Any:
            if options is None:
                return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
            return trial.suggest_categorical(name, dist.choices)

        numbers: list = []
        _walk(self.dna_spec, ask, numbers)
        dna = pg.DNA.from_numbers(numbers, self.dna_spec)
        self._open.setdefault(dna_key(dna), []).append(trial)
        return dna

    def _feedback(self, dna: pg.DNA, reward: float | tuple[float, ...]) -> None:
        values = self._values(reward)
        trials = self._open.get(dna_key(dna))
        if trials:
            trial = trials.pop(0)
            if not trials:
                del self._open[dna_key(dna)]
            if any(math.isnan(v) for v in values):  # a failed trial, as Optuna sees it
                import optuna

                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(trial, values)
        else:
            self._add_finished(dna, values)

    def _replay(self, trial_id: int, dna: pg.DNA, reward: Any) -> None:
        del trial_id
        if reward is not None:
            if self.multi_objective and not isinstance(reward, (tuple, list)):
                reward = (reward,)
            self._add_finished(dna, self._values(reward))

    # -- helpers -----------------------------------------------------------------------
    def _values(self, reward: float | tuple[float, ...]) -> list[float]:
        values = [float(v) for v in reward] if isinstance(reward, (tuple, list)) \
            else [float(reward)]
        if len(values) != self.num_objectives:
            raise ConfigError(f"reward {reward!r} has {len(values)} objective(s) but the "
                              f"Optuna study has {self.num_objectives}; pass "
                              f"num_objectives={len(values)} in the algorithm options")
        return values

    def params_of(self, dna: pg.DNA) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Optuna parameters and distributions that encode ``dna`` (its inverse walk).

        Raises:
          ConfigError: the DNA does not fit the space.
        """
        dna.use_spec(self.dna_spec)
        chosen = {str(k): v for k, v in dna.to_dict(key_type="id", value_type="value").items()}
        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}

        def ask(name: str, dist: Any, options: Sequence[int] | None) -> Any:
            key = "" if name == "(root)" else name
            if key not in chosen:
                raise ConfigError(f"DNA {dna} does not fit the search space: no decision "
                                  f"{name!r}")
            value = chosen[key]
            if options is not None:
                if value not in options:
                    raise ConfigError(f"DNA {dna} does not fit the search space: {value!r} "
                                      f"at {name!r}, expected one of {list(options)}")
                value = list(options).index(value)
            else:
                value = min(max(float(value), dist.low), dist.high)
            params[name], dists[name] = value, dist
            return value

        _walk(self.dna_spec, ask, [])
        return params, dists

    def _add_finished(self, dna: pg.DNA, values: list[float]) -> None:
        import optuna

        params, dists = self.params_of(dna)
        if not any(math.isnan(v) for v in values):
            trial = optuna.trial.create_trial(params=params, distributions=dists, values=values)
        else:
            trial = optuna.trial.create_trial(params=params, distributions=dists,
                                              state=optuna.trial.TrialState.FAIL)
        self._study.add_trial(trial)


def _named(sampler: str, seed: int | None, options: dict[str, Any],
           num_objectives: int = 1, **quiet: Any) -> OptunaSampler:
    """An `OptunaSampler` of a named sampler with Optuna's own defaults and ``options``.

    Args:
      sampler: A name in `SAMPLERS`.
      seed: The sampler's seed.
      options: The user's keyword options of the Optuna sampler class.
      num_objectives: Objectives of the study.
      **quiet: Options that only silence Optuna's warnings (the user's win).

    Raises:
      TypeError: an option the installed Optuna's sampler does not take (the
        registry turns it into a one-line ConfigError).
    """
    import optuna

    cls = getattr(optuna.samplers, SAMPLERS[sampler])
    accepted = set(inspect.signature(cls).parameters) - {"seed"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"optuna {optuna.__version__}'s {cls.__name__} has no option "
                        f"{unknown[0]!r}")
    return OptunaSampler(sampler=sampler, seed=seed, num_objectives=num_objectives,
                         sampler_options={**quiet, **options})


# The registered samplers take the installed Optuna's defaults (memnas pins none of their
# search settings); only warnings that every conditional or categorical space would
# trigger on each trial are turned off.
@register_algorithm("tpe")
def tpe(seed: int | None = None, **options: Any) -> OptunaSampler:
    """Optuna's TPE (Bergstra et al. 2011) with Optuna's defaults; ``options``: `TPESampler`'s."""
    return _named("tpe", seed, options)


@register_algorithm("cmaes")
def cmaes(seed: int | None = None, **options: Any) -> OptunaSampler:
    """Optuna's CMA-ES over the float decisions (needs the ``cmaes`` package).

    CMA-ES handles only numerical parameters: categorical decisions are sampled
    independently (at random) by Optuna. ``options``: `CmaEsSampler`'s.

    Raises:
      ConfigError: the ``cmaes`` package is not installed.
    """
    if importlib.util.find_spec("cmaes") is None:
        raise ConfigError("algorithm 'cmaes' needs the cmaes package: pip install cmaes")
    return _named("cmaes", seed, options, warn_independent_sampling=False)


@register_algorithm("gp")
def gp(seed: int | None = None, **options: Any) -> OptunaSampler:
    """Optuna's Gaussian-process Bayesian optimisation (GPSampler; needs torch and scipy).

    Its GP covers the parameters every trial has; decisions inside conditional
    branches are sampled independently (at random) by Optuna. ``options``: `GPSampler`'s.
    """
    return _named("gp", seed, options, warn_independent_sampling=False)


@register_algorithm("optuna_nsga2")
def optuna_nsga2(seed: int | None = None, num_objectives: int = 2,
                 **options: Any) -> OptunaSampler:
    """Optuna's NSGA-II (multi-objective); the reward is a tuple of ``num_objectives``.

    ``options``: `NSGAIISampler`'s (``population_size``, ...).
    """
    return _named("nsga2", seed, options, num_objectives=num_objectives)
