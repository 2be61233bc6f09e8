"""Tests of `TrainEvaluator` and the cost helpers: real (tiny) training runs."""

from __future__ import annotations

import pickle

import pytest
import torch

from memnas.evaluators import (
    MQAR,
    TrainEvaluator,
    count_params,
    measure_latency,
    quickstart_evaluator,
)
from memnas.measurement import Context, Measurement
from memnas.searchspace import Block, LinearAttention, SequenceModel, SoftmaxAttention

TASK = MQAR(vocab_size=32, seq_len=16, num_kv_pairs=2)


def _model(d_model: int = 16, vocab_size: int = 32) -> SequenceModel:
    return SequenceModel(
        vocab_size=vocab_size,
        d_model=d_model,
        layers=[Block(SoftmaxAttention(2), 1), Block(LinearAttention(1), 1)],
        max_len=16,
    )


def _tiny() -> TrainEvaluator:
    return TrainEvaluator(task=TASK, steps=20, batch_size=8, eval_examples=64, report_every=5)


def test_tiny_run_returns_a_measurement() -> None:
    ctx = Context(seed=3)
    m = _tiny()(_model(), ctx)
    assert isinstance(m, Measurement)
    assert 0.0 <= m.metrics["accuracy"] <= 1.0
    assert m.metrics["loss"] > 0
    assert m.costs["params"] == count_params(_model().build()) > 0
    assert m.costs["latency_ms"] > 0
    assert not m.non_finite()
    steps = [p["step"] for p in m.curve if p["name"] == "loss"]
    assert steps == [5, 10, 15, 20]
    assert {p["name"] for p in m.curve} == {"loss", "accuracy", "eval_loss", "eval_accuracy"}
    assert ctx.curve == m.curve
    final = {p["name"]: p["value"] for p in m.curve if p["name"].startswith("eval_")}
    assert final == {"eval_loss": m.metrics["loss"], "eval_accuracy": m.metrics["accuracy"]}


def test_same_seed_same_result() -> None:
    a = _tiny()(_model(), Context(seed=11))
    b = _tiny()(_model(), Context(seed=11))
    assert a.metrics == b.metrics
    assert [p["value"] for p in a.curve] == [p["value"] for p in b.curve]
    c = _tiny()(_model(), Context(seed=12))
    assert c.metrics["loss"] != a.metrics["loss"]


def test_budget_overrides_steps_and_threads_are_restored() -> None:
    threads = torch.get_num_threads()
    m = _tiny()(_model(), Context(seed=0, budget={"steps": 7}, num_cpus=1))
    assert max(p["step"] for p in m.curve) == 7
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="'ten'"):
        _tiny()(_model(), Context(budget={"steps": "ten"}))


def test_model_too_small_for_the_vocabulary_is_named() -> None:
    with pytest.raises(ValueError, match="vocab_size=8 is smaller"):
        _tiny()(_model(vocab_size=8), Context())

    class Bare:  # a candidate without vocab_size: caught on the logits
        def build(self) -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Embedding(32, 8), torch.nn.Linear(8, 5))

    with pytest.raises(ValueError, match=r"V >= 32\), got shape \(8, 16, 5\)"):
        _tiny()(Bare(), Context())


def test_evaluator_is_picklable() -> None:
    ev = quickstart_evaluator()
    assert pickle.loads(pickle.dumps(ev)) == ev


def test_quickstart_config_separates_architectures() -> None:
    """Two-layer attention learns the quickstart MQAR; one-layer attention cannot."""
    ev = quickstart_evaluator()
    task = ev.task

    def model(layers: int) -> SequenceModel:
        return SequenceModel(
            task.vocab_size, 32, [Block(SoftmaxAttention(2))] * layers, max_len=task.seq_len
        )

    deep = ev(model(2), Context(seed=0))
    shallow = ev(model(1), Context(seed=0))
    assert deep.metrics["accuracy"] > 0.9
    assert shallow.metrics["accuracy"] < 0.5


def test_cost_helpers() -> None:
    model = SequenceModel(32, 16, [Block(SoftmaxAttention())], tie_embeddings=True).build()
    untied = SequenceModel(32, 16, [Block(SoftmaxAttention())]).build()
    assert count_params(untied) - count_params(model) == 32 * 16
    model.train()
    assert measure_latency(model, torch.zeros(2, 8, dtype=torch.long), repeats=3) > 0
    assert model.training
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, torch.zeros(1, 4, dtype=torch.long), repeats=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda_when_given_a_gpu() -> None:
    ctx = Context(seed=0, num_gpus=1)
    assert ctx.device == "cuda"
    m = _tiny()(_model(), ctx)
    assert 0.0 <= m.metrics["accuracy"] <= 1.0 and m.costs["latency_ms"] > 0


def test_eval_at_gives_a_learning_curve_from_one_run() -> None:
    task = MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2)
    spec = SequenceModel(vocab_size=16, d_model=16, max_len=12,
                         layers=[Block(mixer=SoftmaxAttention(num_heads=2))])
    full = TrainEvaluator(task=task, steps=30, batch_size=8, eval_examples=32,
                          eval_at=(10, 20, 30, 99))
    m = full(spec, Context(seed=3))
    assert {"accuracy_at_10", "accuracy_at_20", "accuracy_at_30"} <= set(m.metrics)
    assert "accuracy_at_99" not in m.metrics  # past the run: ignored
    assert m.metrics["accuracy_at_30"] == m.metrics["accuracy"]
    t = [m.costs[f"train_s_at_{s}"] for s in (10, 20, 30)]
    assert 0 < t[0] < t[1] < t[2]
    evals = [p["step"] for p in m.curve if p["name"] == "eval_accuracy"]
    assert evals == [10, 20, 30]
    # Checkpoints evaluate without changing the training: the same final model.
    plain = TrainEvaluator(task=task, steps=30, batch_size=8, eval_examples=32)(spec, Context(seed=3))
    assert plain.metrics["loss"] == pytest.approx(m.metrics["loss"], abs=1e-6)
