"""Lottery-ticket IMP inside memory models on MQAR: masks on the mixers' projections."""

import numpy as np
import pytest

import memnas
from memnas.algorithms.lottery import lottery_space
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.evaluators.sparse_sequence import SparseSequenceEvaluator
from memnas.measurement import Context
from memnas.searchspace import Block, SequenceModel, get_mixer, memory_space
from memnas.searchspace.sparse import SparseNet, prunable

TASK = MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2)

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(mixer, **fields):
    return SequenceModel(vocab_size=TASK.vocab_size, d_model=16, max_len=TASK.seq_len,
                         layers=[Block(mixer=get_mixer(mixer)(**fields), mlp_ratio=1)])


@pytest.mark.parametrize("mixer,projections", [
    ("SoftmaxAttention", {"qkv", "out"}),
    ("LinearAttention", {"qkv", "out"}),
    ("DeltaNet", {"qkv", "beta", "out"}),
    ("GatedLinearAttention", {"in_proj", "gate_up", "out"}),
    ("Mamba", {"in_proj", "x_proj", "dt_proj", "out_proj"}),
])
def test_prunable_weights_include_every_mixer_projection(mixer, projections):
    model = SparseNet(parent=_model(mixer), sparsity=0.5).build()
    names = prunable(model)
    assert {f"blocks.0.mixer.{p}.weight" for p in projections} <= set(names)
    assert names[-1] == "head.weight"
    for p in projections:
        mask = model.masks[f"blocks.0.mixer.{p}.weight"]
        assert int(mask.sum()) == mask.numel() - round(0.5 * mask.numel())


def test_imp_runs_two_rounds_on_a_memory_model_through_the_driver(sqlite_url):
    parent = memory_space(TASK.vocab_size, min_layers=1, max_layers=1, d_model=(16,),
                          mlp_ratio=(1,), mixers=[get_mixer("DeltaNet")()],
                          max_len=TASK.seq_len)
    assert isinstance(parent, SequenceModel)      # one model of memory_space
    evaluator = SparseSequenceEvaluator(TrainEvaluator(task=TASK, steps=15, eval_examples=64,
                                                       report_every=5))
    result = memnas.Experiment(
        name="imp-memory", space=lottery_space(parent, rounds=2, rate=0.5), evaluator=evaluator,
        algorithm="imp", algorithm_options={"rounds": 2, "rate": 0.5,
                                            "controls": ["random_prune"]},
        objectives={"accuracy": "max", "remaining": "min"}, store=sqlite_url,
    ).run(max_trials=5, executor="local")
    df = result.trials()
    assert len(df) == 3 and set(df["status"]) == {"completed"}
    assert df["remaining"].iloc[0] == 1.0 and df["remaining"].iloc[1] < 1.0
    dense, ticket = result.artifact(0), result.artifact(1)
    masks = result.artifact(1, "input")["masks"]
    names = ticket["prunable"]
    for proj in ("qkv", "beta", "out"):
        name = f"blocks.0.mixer.{proj}.weight"
        kept = masks[name]
        assert kept.sum() == kept.size - round(0.5 * kept.size)
        # IMP kept the largest trained magnitudes of round 0 ...
        final = np.abs(dense["final"][name])
        assert final[kept].min() >= final[~kept].max()
        # ... and round 1 trained from the rewound initial weights with them exactly zero.
        assert np.array_equal(ticket["rewind"][name], dense["rewind"][name] * kept)
        assert (ticket["final"][name][~kept] == 0).all()
        assert not np.array_equal(ticket["final"][name], ticket["rewind"][name])
    assert masks["head.weight"].all() and names[-1] == "head.weight"
    assert {"loss", "accuracy", "eval_accuracy"} <= set(result.curve(1)["name"])


def test_the_evaluator_refuses_late_rewinding_and_trains_a_plain_sparse_net():
    evaluator = SparseSequenceEvaluator(TrainEvaluator(task=TASK, steps=3, eval_examples=16))
    spec = SparseNet(parent=_model("SoftmaxAttention"), sparsity=0.8, criterion="random")
    with pytest.raises(memnas.ConfigError, match="rewind_step=5"):
        evaluator(spec, Context(artifact={"rewind_step": 5}))
    assert evaluator(spec, Context(seed=3)).artifact is None
    m = SparseSequenceEvaluator(evaluator.trainer, return_weights=True)(spec, Context(seed=3))
    assert m.costs["sparsity"] == pytest.approx(0.8, abs=0.01)
    for name, mask in m.artifact["masks"].items():  # AdamW kept the pruned weights at zero
        assert (m.artifact["final"][name][~mask] == 0).all()
        assert (m.artifact["final"][name][mask] != m.artifact["rewind"][name][mask]).any()
    assert m.costs["weights"] == sum(int(v.sum()) for v in m.artifact["masks"].values())
    with pytest.raises(memnas.ConfigError, match="lr_sweep"):
        SparseSequenceEvaluator(TrainEvaluator(task=TASK, lr_sweep=(1e-3, 3e-3)))
