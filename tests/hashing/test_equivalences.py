"""Known equivalences of the memory space hash equal; non-equivalent candidates differ."""

import pyglove as pg

from memnas.hashing import functional_hash, symbolic_hash
from memnas.searchspace import Block, SequenceModel
from memnas.searchspace.mixers.miras import MirasMemory
from memnas.searchspace.mixers.titans import TitansMemory


def _model(mixer):
    return SequenceModel(vocab_size=16, d_model=16, layers=[Block(mixer=mixer)], max_len=16)


def test_titans_is_the_miras_memory_it_builds():
    titans = _model(TitansMemory(num_heads=2, depth=2))
    miras = _model(MirasMemory(structure="mlp", objective="l2", retention="data",
                               learner="momentum", num_heads=2))
    assert symbolic_hash(titans) == symbolic_hash(miras)
    assert functional_hash(titans) == functional_hash(miras)  # the rule is true, not declared only
    other = _model(MirasMemory(structure="mlp", objective="l2", retention="constant",
                               learner="momentum", num_heads=2))
    assert symbolic_hash(titans) != symbolic_hash(other)
    assert functional_hash(titans) != functional_hash(other)


def test_inactive_miras_hyperparameters_do_not_split_the_hash():
    a = _model(MirasMemory(objective="huber", p=3.0, huber_delta=0.5))
    b = _model(MirasMemory(objective="huber", p=1.0, huber_delta=0.5))  # p is unused by huber
    c = _model(MirasMemory(objective="huber", p=3.0, huber_delta=2.0))  # delta is used
    assert symbolic_hash(a) == symbolic_hash(b) != symbolic_hash(c)
    assert functional_hash(a) == functional_hash(b)
    l2 = _model(MirasMemory(objective="l2"))
    lp2 = _model(MirasMemory(objective="lp", p=2.0))
    assert symbolic_hash(l2) == symbolic_hash(lp2)
    assert functional_hash(l2) == functional_hash(lp2)
    dot16 = _model(MirasMemory(objective="dot", chunk_size=16))
    dot4 = _model(MirasMemory(objective="dot", chunk_size=4))
    assert symbolic_hash(dot16) == symbolic_hash(dot4)
    assert functional_hash(dot16) == functional_hash(dot4)
    l2_4 = _model(MirasMemory(objective="l2", chunk_size=4))
    assert symbolic_hash(l2) != symbolic_hash(l2_4)  # chunking changes what l2 computes
