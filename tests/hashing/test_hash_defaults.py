"""The cache's functional hash takes one SGD step: candidates that only start equal hash apart."""

from memnas.hashing import HASH_DEFAULTS, functional_hash
from memnas.searchspace import Block, SequenceModel
from memnas.searchspace.mixers.episodic import EpisodicMemory
from memnas.searchspace.mixers.mlstm import MLSTM
from memnas.searchspace.mixers.softmax_attention import SoftmaxAttention


def _model(mixer):
    return SequenceModel(vocab_size=16, d_model=16, layers=[Block(mixer=mixer)], max_len=8)


def test_a_gate_equal_at_init_only_is_told_apart():
    # memnas bench hashing re-evaluated these apart: equal outputs at init, not after training
    sigmoid, exp = _model(MLSTM(forget="sigmoid")), _model(MLSTM(forget="exp"))
    assert functional_hash(sigmoid) == functional_hash(exp)
    assert functional_hash(sigmoid, **HASH_DEFAULTS) != functional_hash(exp, **HASH_DEFAULTS)


def test_a_true_equivalence_still_hashes_equal():
    # no event starts outside a window that covers the sequence: it is attention
    episodic = _model(EpisodicMemory(window=8, k_events=1))
    assert functional_hash(episodic, **HASH_DEFAULTS) == functional_hash(
        _model(EpisodicMemory(window=8, k_events=4)), **HASH_DEFAULTS)
    assert functional_hash(episodic, **HASH_DEFAULTS) == functional_hash(
        _model(SoftmaxAttention()), **HASH_DEFAULTS)
