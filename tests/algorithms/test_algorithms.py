"""One contract for every registered algorithm: propose, feedback, recover, determinism."""

import pyglove as pg
import pytest

from memnas.algorithms import ALGORITHMS, AlgorithmHooks, make_algorithm
from memnas.errors import ConfigError

# Floats, a conditional subspace (inside b's second branch and inside m's last
# candidate) and a sorted, distinct manyof.
SPACE = pg.Dict(
    a=pg.oneof([1, 2, 3, 4]),
    b=pg.oneof(["x", pg.Dict(y=pg.floatv(0.0, 1.0), z=pg.oneof([5, 6])), "w"]),
    c=pg.floatv(0.0, 1.0),
    m=pg.manyof(2, ["p", "q", "r", pg.Dict(s=pg.oneof([7, 8]))], distinct=True, sorted=True),
)
M_CANDIDATES = ["p", "q", "r", "s"]

# Small options per algorithm, so that 30 trials go past start-up phases.
OPTIONS = {
    "evolution": {"population_size": 6},
    "nsga2": {"population_size": 6},
    "tpe": {"n_startup_trials": 5},
    "gp": {"n_startup_trials": 3},
    "optuna_nsga2": {"population_size": 6},
}
TRIALS = {"gp": 6}  # GP fits are slow on a shared CPU
MULTI_OBJECTIVE = {"nsga2", "optuna_nsga2"}
KNOWN = set(OPTIONS) | {"random", "mcts", "cmaes"}
# Algorithms with an artifact channel (they hand the evaluator an input and need its
# output back, e.g. weights) search spaces of their own; their modules' tests run
# them there, with the artifacts.
ARTIFACT_ALGORITHMS = {"imp", "sharp_darts"}


def _uses_artifacts(name):
    algo = make_algorithm(name, seed=0)
    return isinstance(algo, AlgorithmHooks) and (
        type(algo).artifact_for is not AlgorithmHooks.artifact_for
        or type(algo).feedback_artifact is not AlgorithmHooks.feedback_artifact)


GENERIC = [name for name in sorted(ALGORITHMS) if not _uses_artifacts(name)]


def _algo(name, seed=1):
    algo = make_algorithm(name, seed=seed, **OPTIONS.get(name, {}))
    algo.setup(pg.dna_spec(SPACE))
    return algo


def _reward(dna, multi):
    v = pg.materialize(SPACE, dna)
    acc = v["a"] * 0.1 + (0.2 if isinstance(v["b"], dict) else 0.0) - abs(v["c"] - 0.5)
    return (acc, -float(v["a"])) if multi else acc


def _check(dna):
    v = pg.materialize(SPACE, dna)
    assert v["a"] in (1, 2, 3, 4) and 0.0 <= v["c"] <= 1.0
    b = v["b"]
    assert b in ("x", "w") or (0.0 <= b["y"] <= 1.0 and b["z"] in (5, 6))
    picks = [M_CANDIDATES.index(m if isinstance(m, str) else "s") for m in v["m"]]
    assert len(picks) == 2 and picks == sorted(set(picks))
    return v


def _run(name, n=None, seed=1, in_flight=1):
    """Proposes ``in_flight`` at a time, then feeds them back in reverse order."""
    n = n or TRIALS.get(name, 30)
    algo = _algo(name, seed)
    multi = algo.multi_objective
    history = []
    while len(history) < n:
        batch = [algo.propose() for _ in range(min(in_flight, n - len(history)))]
        for dna in reversed(batch):
            r = _reward(dna, multi)
            algo.feedback(dna, r)
            history.append((dna, r))
    return algo, history


@pytest.mark.parametrize("name", GENERIC)
def test_propose_feedback_valid_dna(name):
    _, history = _run(name)
    seen = [_check(dna) for dna, _ in history]
    assert any(isinstance(v["b"], dict) for v in seen)  # conditional branches reached
    assert any(isinstance(m, dict) for v in seen for m in v["m"])


@pytest.mark.parametrize("name", GENERIC)
def test_several_proposals_in_flight(name):
    algo, history = _run(name, in_flight=4)
    for dna, _ in history:
        _check(dna)
    assert algo.num_proposals == algo.num_feedbacks == len(history)


@pytest.mark.parametrize("name", GENERIC)
def test_deterministic_under_seed(name):
    _, h1 = _run(name, seed=3, in_flight=3)
    _, h2 = _run(name, seed=3, in_flight=3)
    assert [d.to_numbers() for d, _ in h1] == [d.to_numbers() for d, _ in h2]


@pytest.mark.parametrize("name", GENERIC)
def test_recover_from_history(name):
    algo, history = _run(name, n=min(20, TRIALS.get(name, 20)))
    # the last two were still running when the driver stopped
    replay = history[:-2] + [(dna, None) for dna, _ in history[-2:]]
    fresh = _algo(name)
    fresh.recover(replay)
    assert fresh.num_proposals == algo.num_proposals == len(history)
    assert fresh.num_feedbacks == len(history) - 2
    for dna, r in history[-2:]:  # their results arrive after the restart
        fresh.feedback(dna, r)
    dna = fresh.propose()  # a recovered algorithm goes on proposing valid DNA
    _check(dna)
    fresh.feedback(dna, _reward(dna, fresh.multi_objective))


@pytest.mark.parametrize("name", GENERIC)
def test_multi_objective_where_claimed(name):
    algo = _algo(name)
    if name in KNOWN:
        assert algo.multi_objective == (name in MULTI_OBJECTIVE)
    dna = algo.propose()
    if algo.multi_objective:
        algo.feedback(dna, (0.5, -1.0))  # a tuple reward is taken
        assert algo.num_feedbacks == 1
    elif algo.needs_feedback:
        with pytest.raises((ValueError, ConfigError)):
            algo.feedback(dna, (0.5, -1.0))


def test_only_known_artifact_algorithms_skip_the_generic_space():
    skipped = set(ALGORITHMS) - set(GENERIC)
    assert skipped <= ARTIFACT_ALGORITHMS, \
        f"{sorted(skipped - ARTIFACT_ALGORITHMS)}: test against their own space, then list here"
    assert {"random", "evolution", "nsga2", "mcts", "tpe", "cmaes", "gp",
            "optuna_nsga2", "asha", "hyperband", "mo_asha"} <= set(GENERIC)


def test_evolution_improves_over_random():
    _, evo = _run("evolution", n=60, seed=0)
    _, rnd = _run("random", n=60, seed=0)
    best_late = lambda h: sum(r for _, r in h[-20:]) / 20  # noqa: E731
    assert best_late(evo) > best_late(rnd)


def test_unknown_algorithm_names_choices():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'evo'; expected one of \['asha', 'cmaes'"):
        make_algorithm("evo")
    with pytest.raises(ConfigError, match="bad options"):
        make_algorithm("evolution", populationsize=3)
    with pytest.raises(ConfigError, match="bad options"):
        make_algorithm("mcts", population_size=3)


def test_user_generator_is_cloned():
    mine = pg.geno.Random(seed=1)
    got = make_algorithm(mine)
    assert got is not mine and isinstance(got, pg.geno.Random)
