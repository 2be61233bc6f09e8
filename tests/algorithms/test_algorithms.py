"""One contract for every registered algorithm: propose, feedback, recover, determinism."""

import pyglove as pg
import pytest

from memnas.algorithms import ALGORITHMS, make_algorithm
from memnas.errors import ConfigError

SPACE = pg.Dict(a=pg.oneof([1, 2, 3, 4]), b=pg.oneof(["x", "y", "z"]), c=pg.floatv(0.0, 1.0))


def _reward(dna, multi):
    v = pg.materialize(SPACE, dna)
    acc = v["a"] * 0.1 + (0.2 if v["b"] == "y" else 0.0) - abs(v["c"] - 0.5)
    return (acc, -float(v["a"])) if multi else acc


def _run(name, n=30, seed=1):
    algo = make_algorithm(name, seed=seed, population_size=6) if name != "random" else \
        make_algorithm(name, seed=seed)
    algo.setup(pg.dna_spec(SPACE))
    multi = algo.multi_objective
    history = []
    for _ in range(n):
        dna = algo.propose()
        r = _reward(dna, multi)
        algo.feedback(dna, r)
        history.append((dna, r))
    return algo, history


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_propose_feedback_valid_dna(name):
    _, history = _run(name)
    for dna, _ in history:
        v = pg.materialize(SPACE, dna)
        assert v["a"] in (1, 2, 3, 4) and v["b"] in ("x", "y", "z") and 0.0 <= v["c"] <= 1.0


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_deterministic_under_seed(name):
    _, h1 = _run(name, seed=3)
    _, h2 = _run(name, seed=3)
    assert [d.to_numbers() for d, _ in h1] == [d.to_numbers() for d, _ in h2]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_recover_from_history(name):
    algo, history = _run(name, n=20)
    fresh = make_algorithm(name, seed=1, **({} if name == "random" else {"population_size": 6}))
    fresh.setup(pg.dna_spec(SPACE))
    fresh.recover(history)
    assert fresh.num_proposals == algo.num_proposals == 20
    assert fresh.num_feedbacks == 20
    dna = fresh.propose()  # a recovered algorithm goes on proposing valid DNA
    pg.materialize(SPACE, dna)


def test_nsga2_is_multi_objective_and_evolution_is_not():
    assert make_algorithm("nsga2").multi_objective
    assert not make_algorithm("evolution").multi_objective


def test_evolution_improves_over_random():
    _, evo = _run("evolution", n=60, seed=0)
    _, rnd = _run("random", n=60, seed=0)
    best_late = lambda h: sum(r for _, r in h[-20:]) / 20  # noqa: E731
    assert best_late(evo) > best_late(rnd)


def test_unknown_algorithm_names_choices():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'evo'; expected one of \['evolution'"):
        make_algorithm("evo")
    with pytest.raises(ConfigError, match="bad options"):
        make_algorithm("evolution", populationsize=3)


def test_user_generator_is_cloned():
    mine = pg.geno.Random(seed=1)
    got = make_algorithm(mine)
    assert got is not mine and isinstance(got, pg.geno.Random)
