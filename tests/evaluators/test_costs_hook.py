"""The evaluators' ``costs(candidate)`` hook: the costs a real evaluation stores, known before
training (params, state_bytes, FLOPs per token; never the measured latency)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memnas.evaluators import (MQAR, LanguageModelEvaluator, MultiTaskEvaluator, TextCorpus,
                               TrainEvaluator)
from memnas.evaluators.digits import Digits
from memnas.evaluators.sparse_training import SparseTrainEvaluator
from memnas.measurement import Context, costs_before_training
from memnas.searchspace import Block, SequenceModel, SoftmaxAttention
from memnas.searchspace.mixers import registered_mixers
from memnas.searchspace.sparse import MLP, SparseNet

pytestmark = pytest.mark.usefixtures("one_thread")

QUICKSTART_MIXERS = [
    "DeltaNet", "DenseHopfield", "ELMNeuron", "EpisodicMemory", "GatedDeltaNet",
    "GatedLinearAttention", "HopfieldLayer", "LinearAttention", "MLSTM", "Mamba", "Mamba2",
    "MirasMemory", "MixtureOfMemories", "Retention", "SegmentMemory", "SoftmaxAttention",
    "TitansMemory",
]
KNOWN = {"params", "flops_per_token", "state_bytes"}


def _stored(m) -> dict[str, float]:
    return {k: v for k, v in m.costs.items() if k in KNOWN}


def test_train_evaluator_costs_are_what_a_trained_trial_stores() -> None:
    # The quickstart's task and mixers; a few steps change every weight the costs could see.
    evaluator = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=4,
                               batch_size=8, eval_examples=32)
    mixers = [registered_mixers()[name]() for name in QUICKSTART_MIXERS]
    candidates = [SequenceModel(vocab_size=64, d_model=16, max_len=16,  # every mixer, in threes
                                layers=[Block(m, 2) for m in mixers[i:i + 3]])
                  for i in range(0, len(mixers), 3)]
    assert costs_before_training(evaluator, candidates[-1]) == evaluator.costs(candidates[-1])
    for candidate in candidates:
        before = torch.get_rng_state()
        known = evaluator.costs(candidate)
        assert torch.equal(torch.get_rng_state(), before)   # the driver's random state kept
        assert set(known) == KNOWN and "latency_ms" not in known
        stored = _stored(evaluator(candidate, Context(seed=7)))
        if "EpisodicMemory" in str(candidate):  # its events, so its FLOPs, follow the weights
            assert known["flops_per_token"] == pytest.approx(stored.pop("flops_per_token"),
                                                             rel=0.05)
            known.pop("flops_per_token")
        assert known == stored, candidate
    with pytest.raises(ValueError, match="vocab_size=8 is smaller"):
        evaluator.costs(SequenceModel(vocab_size=8, d_model=16, max_len=16,
                                      layers=[Block(SoftmaxAttention(2), 1)]))


def test_multitask_and_language_model_costs_are_what_they_store() -> None:
    spec = SequenceModel(vocab_size=64, d_model=16, max_len=16,
                         layers=[Block(SoftmaxAttention(2), 1)])
    multi = MultiTaskEvaluator(tasks={"small": MQAR(vocab_size=32, seq_len=16, num_kv_pairs=2),
                                      "large": MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4)},
                               steps=2, batch_size=4, eval_examples=8)
    known = multi.costs(spec)
    assert known == _stored(multi(spec, Context(seed=1)))
    assert known["params"] == multi.trainer(multi.tasks[1][1]).costs(spec)["params"]  # largest
    corpus = TextCorpus.from_array(np.random.default_rng(0).integers(0, 64, 3000), seq_len=16)
    lm = LanguageModelEvaluator(corpus=corpus, steps=2, batch_size=4, eval_examples=8)
    assert lm.costs(spec) == _stored(lm(spec, Context(seed=1)))
    assert set(lm.costs(spec)) == KNOWN


@pytest.mark.parametrize("candidate", [
    MLP(in_features=64, hidden=[32, 16]),
    SparseNet(parent=MLP(in_features=64, hidden=[32, 16]), sparsity=0.6, criterion="random"),
    SparseNet(parent=MLP(in_features=64, hidden=[32, 16]), sparsity=0.5, scope="global",
              output_rate=0.5),
    SparseNet(parent=MLP(in_features=64, hidden=[32, 16]), sparsity=[0.5, 0.3, 0.2],
              units=[[0, 2, 3], [1]], groups=4),
], ids=["dense", "random", "global", "units"])
def test_sparse_trainer_costs_are_what_it_stores(candidate) -> None:
    for evaluator in (SparseTrainEvaluator(data=Digits(seed=0), steps=5),
                      SparseTrainEvaluator(data=Digits(seed=0), steps=5, prune_steps=3)):
        known = evaluator.costs(candidate)
        assert set(known) == {"remaining", "sparsity", "weights", "params"}
        assert known == evaluator(candidate, Context(seed=3)).costs
