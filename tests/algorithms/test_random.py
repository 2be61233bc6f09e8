"""memnas's random search draws exactly what ``pg.geno.Random`` draws, only faster."""

import random

import pyglove as pg
import pytest

from memnas.algorithms import make_algorithm

SPACES = {
    "flat": pg.Dict(x=pg.floatv(0.0, 1.0), width=pg.oneof([16, 32, 64])),
    "nested": pg.Dict(
        x=pg.floatv(0.0, 1.0), width=pg.oneof([16, 32, 64]),
        nest=pg.oneof([pg.Dict(a=pg.oneof([1, 2]), b=pg.floatv(1e-3, 1.0, scale="log")), 3,
                       pg.Dict(q=pg.manyof(2, [1, 2, 3]))]),
        m=pg.manyof(2, [1, 2, 3, 4])),
    "deep": pg.List([pg.oneof([pg.Dict(k=pg.oneof([
        pg.Dict(z=pg.oneof([1, 2]), y=pg.manyof(3, [1, 2, 3, 4], distinct=False, sorted=True)),
        5])), 1]) for _ in range(3)]),
    "manyof_subspaces": pg.Dict(a=pg.manyof(2, [pg.Dict(u=pg.oneof([1, 2, 3])),
                                                pg.Dict(v=pg.floatv(0.0, 1.0)), 7])),
    "one_decision": pg.Dict(a=pg.oneof([1, 2])),
    "unsorted": pg.Dict(a=pg.manyof(3, [1, 2, 3, 4, 5], distinct=True, sorted=False)),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_same_draws_as_pyglove(name):
    space = SPACES[name]
    spec = pg.dna_spec(space)
    theirs, ours = pg.geno.Random(seed=3), make_algorithm("random", seed=3)
    theirs.setup(spec)
    ours.setup(spec)
    for _ in range(200):
        a, b = theirs.propose(), ours.propose()
        assert pg.eq(a, b) and pg.to_json_str(a) == pg.to_json_str(b)
        assert b.spec is a.spec and b.spec is not None
        assert pg.eq(pg.materialize(space, b), pg.materialize(space, a))


def test_recover_moves_the_stream_on_as_pyglove_does():
    spec = pg.dna_spec(SPACES["nested"])
    first = make_algorithm("random", seed=5)
    first.setup(spec)
    history = [(first.propose(), 0.0) for _ in range(7)]
    again = make_algorithm("random", seed=5)
    again.setup(spec)
    again.recover(history)
    theirs = pg.geno.Random(seed=5)
    theirs.setup(spec)
    theirs.recover(history)
    following = again.propose()
    assert pg.eq(following, first.propose()) and pg.eq(following, theirs.propose())


def test_custom_decision_points_draw_with_their_own_function():
    class Opaque(pg.hyper.CustomHyper):
        def custom_decode(self, dna):
            return dna.value

        def random_dna(self, random_generator=None, previous_dna=None):
            return pg.DNA(f"v{(random_generator or random).randint(0, 9)}")

    space = pg.Dict(w=Opaque(), b=pg.oneof([1, 2]))
    algo = make_algorithm("random", seed=0)
    algo.setup(pg.dna_spec(space))
    dna = algo.propose()
    assert dna.children[0].value.startswith("v") and dna.children[1].value in (0, 1)
