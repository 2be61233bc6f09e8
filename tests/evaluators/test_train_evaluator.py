"""Tests of `TrainEvaluator` and the cost helpers: real (tiny) training runs."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from memnas.evaluators import (
    MQAR,
    DelayedMatchToSample,
    MultiTaskEvaluator,
    NParity,
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


SWEEP_TASK = MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2)
SWEEP_SPEC = SequenceModel(vocab_size=16, d_model=32, max_len=12,
                           layers=[Block(mixer=SoftmaxAttention(num_heads=2))] * 2)


def _sweeper(**kwargs) -> TrainEvaluator:
    return TrainEvaluator(task=SWEEP_TASK, steps=80, batch_size=16, eval_examples=64,
                          report_every=20, **kwargs)


def _by_name(curve: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for p in curve:
        out.setdefault(p["name"], []).append((p["step"], p["value"]))
    return out


def test_lr_sweep_scores_the_best_run_and_keeps_every_curve() -> None:
    ev = _sweeper(lr_sweep=(1e-7, 1e-2, 10.0), eval_at=(40,))
    ctx = Context(seed=0)
    m = ev(SWEEP_SPEC, ctx)
    assert not m.non_finite()
    runs = [(m.metrics[f"accuracy_lr_{i}"], -m.metrics[f"loss_lr_{i}"]) for i in range(3)]
    assert [m.metrics[f"lr_{i}"] for i in range(3)] == [1e-7, 1e-2, 10.0]
    assert runs.index(max(runs)) == 1 and m.metrics["best_lr"] == 1e-2  # not 1e-7 nor 10
    assert m.metrics["accuracy"] == m.metrics["accuracy_lr_1"] > m.metrics["accuracy_lr_0"]
    assert m.metrics["loss"] == m.metrics["loss_lr_1"]
    # The chosen run is a plain run at its rate: the same initialisation and batches.
    plain = _sweeper(lr=1e-2, eval_at=(40,))(SWEEP_SPEC, Context(seed=0))
    for key in ("accuracy", "loss", "accuracy_at_40", "loss_at_40", "accuracy_at_80"):
        assert m.metrics[key] == pytest.approx(plain.metrics[key], abs=1e-6), key
    assert m.costs["params"] == plain.costs["params"] and "train_s_at_40" in m.costs
    # Every run's curve, under its own prefix, each name's steps increasing.
    curves = _by_name(m.curve)
    names = {"loss", "accuracy", "eval_loss", "eval_accuracy"}
    assert set(curves) == {f"{prefix}/{n}" for prefix in ("lr=1e-07", "lr=0.01", "lr=10.0")
                           for n in names}
    assert all([s for s, _ in pts] == sorted(set(s for s, _ in pts)) for pts in curves.values())
    assert [s for s, _ in curves["lr=0.01/loss"]] == [20, 40, 60, 80]
    assert [v for _, v in curves["lr=0.01/loss"]] == \
        pytest.approx([v for _, v in _by_name(plain.curve)["loss"]], abs=1e-6)
    assert curves["lr=0.01/eval_accuracy"][-1] == (80, m.metrics["accuracy"])
    assert ctx.curve == m.curve
    again = ev(SWEEP_SPEC, Context(seed=0))
    assert again.metrics == m.metrics
    assert [p["value"] for p in again.curve] == [p["value"] for p in m.curve]


def test_a_diverged_run_neither_wins_nor_fails_the_sweep() -> None:
    ev = TrainEvaluator(task=SWEEP_TASK, steps=10, batch_size=8, eval_examples=32,
                        report_every=5, grad_clip=0.0, lr_sweep=(1e4, 1e-2), sweep_metric="loss")
    m = ev(SWEEP_SPEC, Context(seed=0))
    assert m.metrics["best_lr"] == 1e-2 and m.metrics["loss"] == m.metrics["loss_lr_1"]
    assert "loss_lr_0" not in m.metrics and "accuracy_lr_0" in m.metrics  # its loss is NaN
    assert not m.non_finite()
    diverged = [p for p in m.curve if p["name"].startswith("lr=10000.0/")]
    assert diverged and max(p["step"] for p in diverged) < 10  # it stopped early
    assert all(math.isfinite(p["value"]) for p in m.curve)  # no NaN point for the store
    alone = TrainEvaluator(task=SWEEP_TASK, steps=10, batch_size=8, eval_examples=32,
                           grad_clip=0.0, lr=1e4)(SWEEP_SPEC, Context(seed=0))
    assert alone.non_finite() == ["loss"]  # a plain diverged run still fails its trial
    assert all(math.isfinite(p["value"]) for p in alone.curve)


def test_bad_sweeps_are_named() -> None:
    for bad, match in (((1e-3, 0.0), "got 0.0"), ((-1,), "got -1"), (("fast",), "'fast'"),
                       ((1e-3, float("nan")), "got nan"), ((1e-3, 1e-3), "0.001 twice"),
                       ("1e-3", "'1e-3'")):
        with pytest.raises(ValueError, match=match):
            TrainEvaluator(task=SWEEP_TASK, lr_sweep=bad)
        with pytest.raises(ValueError, match=match):
            MultiTaskEvaluator(tasks={"recall": SWEEP_TASK}, lr_sweep=bad)
    with pytest.raises(ValueError, match="'acc'"):
        TrainEvaluator(task=SWEEP_TASK, sweep_metric="acc")
    with pytest.raises(ValueError, match="lr must be a positive finite number, got 0"):
        TrainEvaluator(task=SWEEP_TASK, lr=0)
    ev = TrainEvaluator(task=SWEEP_TASK, lr_sweep=[3e-3, np.float32(1e-2)])
    assert ev.lr_sweep == (3e-3, float(np.float32(1e-2)))  # a tuple of floats: hashable
    assert pickle.loads(pickle.dumps(ev)) == ev and hash(ev) == hash(pickle.loads(pickle.dumps(ev)))


def test_multitask_sweeps_the_learning_rate_per_task() -> None:
    tasks = {"parity": NParity(horizon=2, seq_len=8),
             "dms": DelayedMatchToSample(horizon=1, num_symbols=4, seq_len=8)}
    spec = SequenceModel(vocab_size=6, d_model=16, max_len=8,
                         layers=[Block(SoftmaxAttention(2), 1)])
    ev = MultiTaskEvaluator(tasks=tasks, steps=12, batch_size=8, eval_examples=32,
                            report_every=4, lr_sweep=(1e-7, 1e-2))
    assert ev.trainer(tasks["dms"]).lr_sweep == (1e-7, 1e-2)
    ctx = Context(seed=1)
    m = ev(spec, ctx)
    assert not m.non_finite() and ctx.curve == m.curve
    curves = _by_name(m.curve)
    for index, name in enumerate(tasks):
        best = m.metrics[f"best_lr_{name}"]
        assert best in (1e-7, 1e-2)
        final = curves[f"lr={best!r}/eval_accuracy_{name}"]
        assert final[-1] == (index * 12 + 12, m.metrics[f"acc_{name}"])
        other = 1e-2 if best == 1e-7 else 1e-7
        assert curves[f"lr={other!r}/eval_accuracy_{name}"][-1][1] <= m.metrics[f"acc_{name}"]
        for lr in ("1e-07", "0.01"):  # every run's curve, in the task's steps
            assert [s for s, _ in curves[f"lr={lr}/loss_{name}"]] == \
                [index * 12 + s for s in (4, 8, 12)]
    assert m.metrics["accuracy"] == pytest.approx((m.metrics["acc_parity"]
                                                   + m.metrics["acc_dms"]) / 2)
    assert ev(spec, Context(seed=1)).metrics == m.metrics
