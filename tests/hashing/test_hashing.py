"""Canonical symbolic hash and functional hash: equal functions hash equal, others differ."""

import os
import random
import subprocess
import sys

import pyglove as pg
import pytest

from memnas.hashing import canonicalize, evaluator_fingerprint, functional_hash, symbolic_hash
from memnas.searchspace import Block, SequenceModel, get_mixer, memory_space, registered_mixers


@pg.members([("a", pg.typing.Int()), ("b", pg.typing.Float(default=1.0)),
             ("mode", pg.typing.Str(default="off"))])
class Knob(pg.Object):
    """A component whose ``b`` only matters when ``mode == "on"`` and ``a`` saturates at 10."""

    def canonical(self):
        return self.clone(override={"a": min(self.a, 10),
                                    **({} if self.mode == "on" else {"b": 1.0})})


def test_rules_of_components_normalise_before_hashing():
    assert symbolic_hash(Knob(a=3, b=5.0)) == symbolic_hash(Knob(a=3, b=7.0))  # branch off
    assert symbolic_hash(Knob(a=3, b=5.0, mode="on")) != symbolic_hash(Knob(a=3, b=7.0, mode="on"))
    assert symbolic_hash(Knob(a=12)) == symbolic_hash(Knob(a=99))  # clamped to the same effect
    assert symbolic_hash(Knob(a=9)) != symbolic_hash(Knob(a=10))
    nested = pg.Dict(x=[Knob(a=11, b=2.0)], y=-0.0)
    assert symbolic_hash(nested) == symbolic_hash(pg.Dict(x=[Knob(a=10)], y=0.0))
    original = Knob(a=12, b=5.0)
    canonicalize(original)
    assert original.a == 12 and original.b == 5.0  # never modified in place


def _space_samples(n, seed=0):
    space = memory_space(vocab_size=32, max_len=16)
    spec = pg.dna_spec(space)
    rng = random.Random(seed)
    return [pg.materialize(space, pg.random_dna(spec, rng)) for _ in range(n)]


def test_symbolic_hash_is_the_same_in_processes_with_other_hash_seeds():
    code = ("import random, pyglove as pg; from memnas.hashing import symbolic_hash, functional_hash;"
            "from memnas.searchspace import memory_space;"
            "s = memory_space(vocab_size=32, max_len=16);"
            "c = pg.materialize(s, pg.random_dna(pg.dna_spec(s), random.Random(0)));"
            "print(symbolic_hash(c), functional_hash(c, fingerprint='f'))")
    # Both processes at once: each spends its time importing torch and pyglove.
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": str(s)}) for s in (1, 2)]
    outs = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        outs.add(out)
    assert len(outs) == 1
    (c,) = _space_samples(1)
    assert outs.pop().split() == [symbolic_hash(c), functional_hash(c, fingerprint="f")]


def _random_candidates(n, seed=0):
    """Candidates drawn like ``pg.random_dna`` draws those of ``memory_space(vocab_size=32,
    max_len=16)`` (each decision uniform: width, depth, and per layer a registered mixer with a
    random DNA of its own space and an MLP ratio), built without materializing the whole space,
    which is the slow part."""
    rng = random.Random(seed)
    names = list(registered_mixers())
    cands = []
    for _ in range(n):
        layers = []
        for _ in range(rng.randint(1, 3)):
            mixer_space = get_mixer(rng.choice(names)).space()
            mixer = pg.materialize(mixer_space, pg.random_dna(pg.dna_spec(mixer_space), rng))
            layers.append(Block(mixer, rng.choice((1, 2, 4))))
        cands.append(SequenceModel(32, rng.choice((16, 32, 64)), layers, max_len=16))
    return cands


def test_different_architectures_differ():
    cands = _random_candidates(25)
    template = pg.template(memory_space(vocab_size=32, max_len=16))
    for c in cands:
        template.encode(c)  # raises unless c is a point of the space
    sym = {symbolic_hash(c) for c in cands}
    fn = {functional_hash(c) for c in cands}
    distinct = {pg.to_json_str(c) for c in cands}
    assert len(sym) == len(distinct) and len(fn) == len(distinct)


def test_functional_hash_sees_through_a_decision_that_changes_nothing():
    (c,) = _space_samples(1, seed=4)
    # The name of a decision's branch is not part of the function: same build, same hash.
    twin = c.clone(deep=True)
    assert functional_hash(c) == functional_hash(twin)
    assert functional_hash(c, fingerprint="mqar") != functional_hash(c, fingerprint="parity")
    assert functional_hash(c, train_steps=2) != functional_hash(c)


def test_lambda_and_def_hash_equal_and_other_functions_differ():
    def double_plus_one(x):
        return 1 + x + x

    probe = [-2.0, 0.0, 0.5, 3.0, 1e3]
    assert functional_hash(lambda x: 2 * x + 1, probe=probe) == functional_hash(double_plus_one, probe=probe)
    assert functional_hash(lambda x: 2 * x + 1.001, probe=probe) != functional_hash(double_plus_one, probe=probe)
    assert functional_hash(lambda x, y: x * y, probe=[(1.0, 2.0), (3.0, 4.0)]) == \
        functional_hash(lambda x, y: y * x, probe=[(1.0, 2.0), (3.0, 4.0)])


def test_float_noise_below_the_quantum_does_not_split():
    probe = [0.1, 0.7, 1.3]
    assert functional_hash(lambda x: x * 3, probe=probe) == \
        functional_hash(lambda x: x + x + x, probe=probe)  # differs in the last bit


def test_bad_inputs():
    with pytest.raises(ValueError, match="needs probe inputs"):
        functional_hash(lambda x: x)
    with pytest.raises(ValueError, match="cannot hash int"):
        functional_hash(3)


def test_evaluator_fingerprints():
    from memnas.evaluators import MQAR, TrainEvaluator

    a = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=100)
    b = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=100)
    c = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=200)
    assert evaluator_fingerprint(a) == evaluator_fingerprint(b) != evaluator_fingerprint(c)

    def f(c, ctx):
        return {"accuracy": 1.0}

    def g(c, ctx):
        return {"accuracy": 0.0}

    assert evaluator_fingerprint(f) != evaluator_fingerprint(g)
