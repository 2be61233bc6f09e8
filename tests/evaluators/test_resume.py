"""Checkpoints and resuming of the trainers: rungs of one training run (real, tiny runs)."""

from __future__ import annotations

import numpy as np
import pytest

from memnas.evaluators import (MQAR, LanguageModelEvaluator, MultiTaskEvaluator, TextCorpus,
                               TrainEvaluator)
from memnas.evaluators.training import CHECKPOINT_FORMAT
from memnas.measurement import Context
from memnas.searchspace import Block, LinearAttention, SequenceModel, SoftmaxAttention
from memnas.store import artifacts

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = MQAR(vocab_size=32, seq_len=16, num_kv_pairs=2)


def _model(d_model: int = 16, vocab_size: int = 32) -> SequenceModel:
    return SequenceModel(vocab_size=vocab_size, d_model=d_model, max_len=16,
                         layers=[Block(SoftmaxAttention(2), 1), Block(LinearAttention(1), 1)])


def _trainer(**kw) -> TrainEvaluator:
    args = dict(task=TASK, steps=100, batch_size=8, eval_examples=64, report_every=10)
    return TrainEvaluator(**{**args, **kw})


def _stored(artifact: dict) -> dict:
    """What a later trial gets as ctx.resume: the artifact as the store keeps it."""
    return artifacts.decode(artifacts.encode(artifact))


def _same_weights(a: dict, b: dict) -> None:
    assert set(a["model"]) == set(b["model"])
    for name in a["model"]:
        np.testing.assert_allclose(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6)


def test_two_rungs_train_as_one_uninterrupted_run() -> None:
    trainer, model = _trainer(eval_at=(30, 70)), _model()
    whole = trainer(model, Context(seed=3, budget={"steps": 100, "max_steps": 100},
                                   checkpoint=True))
    low = trainer(model, Context(seed=3, budget={"steps": 50, "max_steps": 100},
                                 checkpoint=True))
    assert low.artifact["format"] == CHECKPOINT_FORMAT and low.artifact["step"] == 50
    assert "budget_spent" not in low.costs                      # from scratch: memnas fills it
    # The second rung is another trial (another seed): it continues the checkpoint's stream.
    ctx = Context(seed=99, budget={"steps": 100, "max_steps": 100}, checkpoint=True,
                  resume=_stored(low.artifact))
    high = trainer(model, ctx)
    assert high.costs["budget_spent"] == 50
    for name in ("accuracy", "loss", "accuracy_at_70", "loss_at_100"):
        assert high.metrics[name] == pytest.approx(whole.metrics[name], rel=1e-5, abs=1e-6)
    assert "accuracy_at_30" not in high.metrics               # before the checkpoint: low's
    assert low.metrics["accuracy_at_30"] == pytest.approx(whole.metrics["accuracy_at_30"])
    _same_weights(high.artifact, whole.artifact)
    assert high.artifact["step"] == 100
    losses = {p["step"]: p["value"] for p in whole.curve if p["name"] == "loss"}
    resumed = {p["step"]: p["value"] for p in high.curve if p["name"] == "loss"}
    assert sorted(resumed) == [60, 70, 80, 90, 100]
    assert resumed == pytest.approx({s: losses[s] for s in resumed}, rel=1e-5)
    # max_steps defaults to steps: the same run
    assert trainer(model, Context(seed=3, budget={"steps": 100})).metrics == whole.metrics


def test_checkpoint_is_arrays_and_json_and_resuming_at_its_step_trains_nothing() -> None:
    m = _trainer(steps=5)(_model(), Context(seed=1, checkpoint=True))
    described = artifacts.describe(m.artifact)
    assert described["format"] == "str" and described["step"] == "int"
    assert described["rng"].startswith("uint8")
    assert described["optimizer/0/exp_avg"].startswith("float32")
    assert described["optimizer/0/step"] == "float32[]"
    again = _trainer(steps=5)(_model(), Context(budget={"steps": 5}, resume=_stored(m.artifact)))
    assert again.costs["budget_spent"] == 0
    assert again.metrics["loss"] == pytest.approx(m.metrics["loss"], rel=1e-6)


def test_a_checkpoint_of_another_architecture_is_refused_in_one_line() -> None:
    small = _trainer(steps=3)(_model(d_model=16), Context(checkpoint=True)).artifact
    with pytest.raises(ValueError, match="another architecture: .* has shape") as info:
        _trainer(steps=6)(_model(d_model=32), Context(resume=_stored(small)))
    assert "\n" not in str(info.value)
    other = SequenceModel(vocab_size=32, d_model=16, max_len=16,
                          layers=[Block(SoftmaxAttention(2), 1)])
    with pytest.raises(ValueError, match="another architecture: parameter"):
        _trainer(steps=6)(other, Context(resume=_stored(small)))
    with pytest.raises(ValueError, match=r"checkpoint at step 3, not in \[0, steps=2\]"):
        _trainer(steps=2)(_model(), Context(resume=_stored(small)))
    with pytest.raises(ValueError, match=r"must be a memnas.TrainEvaluator/1 checkpoint .*"
                                         r"keys \['steps'\]"):
        _trainer(steps=2)(_model(), Context(resume={"steps": 1}))
    with pytest.raises(ValueError, match="max_steps must be an integer >= steps=10, got 5"):
        _trainer()(_model(), Context(budget={"steps": 10, "max_steps": 5}))


def test_a_learning_rate_sweep_checkpoints_and_continues_every_run() -> None:
    trainer, model = _trainer(steps=20, lr_sweep=(1e-3, 1e-2)), _model()
    budget = {"steps": 20, "max_steps": 20}
    whole = trainer(model, Context(seed=5, budget=budget))
    low = trainer(model, Context(seed=5, budget={**budget, "steps": 8}, checkpoint=True))
    assert sorted(low.artifact["sweep"]) == ["0", "1"]
    assert [low.artifact["sweep"][i]["lr"] for i in "01"] == [1e-3, 1e-2]
    high = trainer(model, Context(seed=6, budget=budget, resume=_stored(low.artifact)))
    assert high.costs["budget_spent"] == 12
    for name in ("best_lr", "accuracy", "loss", "loss_lr_0", "loss_lr_1"):
        assert high.metrics[name] == pytest.approx(whole.metrics[name], rel=1e-5)
    with pytest.raises(ValueError, match=r"run 0 \(lr=0.001\) of this learning-rate sweep"):
        trainer(model, Context(budget=budget, resume={"format": CHECKPOINT_FORMAT}))
    single = _trainer(steps=3)(model, Context(checkpoint=True)).artifact
    with pytest.raises(ValueError, match="sweep"):
        trainer(model, Context(budget=budget, resume=_stored(single)))


def test_multitask_checkpoints_each_task() -> None:
    tasks = {"a": TASK, "b": MQAR(vocab_size=32, seq_len=16, num_kv_pairs=3)}
    multi = MultiTaskEvaluator(tasks=tasks, steps=12, batch_size=8, eval_examples=32,
                               report_every=4)
    budget = {"steps": 12, "max_steps": 12}
    whole = multi(_model(), Context(seed=2, budget=budget))
    low = multi(_model(), Context(seed=2, budget={**budget, "steps": 4}, checkpoint=True))
    assert sorted(low.artifact["tasks"]) == ["a", "b"]
    high = multi(_model(), Context(seed=7, budget=budget, resume=_stored(low.artifact)))
    assert high.costs["budget_spent"] == 8
    assert high.metrics == pytest.approx(whole.metrics, rel=1e-5)
    with pytest.raises(ValueError, match="with task 'a', got \\['format'"):
        multi(_model(), Context(budget=budget, resume={"format": CHECKPOINT_FORMAT}))


def test_language_model_evaluator_returns_and_resumes_checkpoints() -> None:
    rng = np.random.default_rng(0)
    corpus = TextCorpus.from_array(rng.integers(0, 32, size=4000), seq_len=16)
    lm = LanguageModelEvaluator(corpus=corpus, steps=10, batch_size=4, eval_examples=8,
                                report_every=5)
    budget = {"steps": 10, "max_steps": 10}
    whole = lm(_model(), Context(seed=4, budget=budget))
    low = lm(_model(), Context(seed=4, budget={**budget, "steps": 5}, checkpoint=True))
    high = lm(_model(), Context(seed=4, budget=budget, resume=_stored(low.artifact)))
    assert high.costs["budget_spent"] == 5
    assert high.metrics["bits_per_token"] == pytest.approx(whole.metrics["bits_per_token"],
                                                           rel=1e-5)
