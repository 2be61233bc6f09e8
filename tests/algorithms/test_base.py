"""`AlgorithmHooks` and `hooks_of`: the no-op defaults, and the algorithms that declare them."""

import pyglove as pg
import pytest

from memnas.algorithms import AlgorithmHooks, LotteryTicketIMP, hooks_of, make_algorithm


def test_a_plain_generator_gets_the_no_op_defaults():
    algo = make_algorithm("random", seed=0)
    assert not isinstance(algo, AlgorithmHooks)
    hooks = hooks_of(algo)
    assert hooks is not algo and hooks.waiting is False
    dna = pg.DNA([0])
    assert hooks.artifact_for(dna) is None
    assert hooks.feedback_artifact(dna, {"w": 1}) is None


@pytest.mark.parametrize("name", ["imp", "sharp_darts"])
def test_artifact_algorithms_declare_the_hooks(name):
    algo = make_algorithm(name, seed=0)
    assert isinstance(algo, AlgorithmHooks) and hooks_of(algo) is algo
    # The mixin beside pg.geno.DNAGenerator keeps the class symbolic and `waiting` a
    # property (PyGlove's class creation takes it), and clones stay hooks.
    assert isinstance(type(algo).__dict__["waiting"], property)
    assert isinstance(algo, pg.geno.DNAGenerator)
    assert isinstance(algo.clone(deep=True), AlgorithmHooks)
    assert pg.eq(pg.from_json_str(algo.to_json_str()), algo)


def test_waiting_follows_the_running_ticket():
    from memnas.algorithms.lottery import lottery_space

    space = lottery_space(pg.Dict(w=1), rounds=2, rate=0.5)
    algo = LotteryTicketIMP(rounds=2, rate=0.5)
    algo.setup(pg.dna_spec(space))
    assert algo.waiting is False
    algo.propose()  # round 0 of the one chain: round 1 waits for its weights
    assert algo.waiting is True
    with pytest.raises(StopIteration):
        algo.propose()


def test_a_subclass_overrides_only_what_it_needs():
    class Payload(pg.geno.Random, AlgorithmHooks):
        def artifact_for(self, dna):
            return {"n": 1}

    algo = Payload(seed=0)
    algo.setup(pg.dna_spec(pg.oneof([1, 2])))
    dna = algo.propose()
    assert hooks_of(algo).artifact_for(dna) == {"n": 1} and hooks_of(algo).waiting is False
