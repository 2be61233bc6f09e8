"""Tests of `MultiTaskEvaluator` (tiny real training runs) and the recall-gap script's import."""

from __future__ import annotations

import importlib.util
import os
import pickle

import pytest

from memnas.evaluators import (
    DelayedMatchToSample,
    MultiTaskEvaluator,
    NParity,
    count_params,
    mad_evaluator,
)
from memnas.measurement import Context, Measurement
from memnas.searchspace import Block, SequenceModel, SoftmaxAttention

TASKS = {
    "parity": NParity(horizon=2, seq_len=8),
    "dms": DelayedMatchToSample(horizon=1, num_symbols=4, seq_len=8),
}


def _model(vocab_size: int = 6) -> SequenceModel:
    return SequenceModel(vocab_size=vocab_size, d_model=16,
                         layers=[Block(SoftmaxAttention(2), 1)], max_len=8)


def _tiny(tasks: dict = TASKS, **kwargs) -> MultiTaskEvaluator:
    return MultiTaskEvaluator(tasks=tasks, steps=12, batch_size=8, eval_examples=32,
                              report_every=4, **kwargs)


def test_two_tasks_give_each_accuracy_and_their_mean() -> None:
    ctx = Context(seed=1)
    m = _tiny()(_model(), ctx)
    assert isinstance(m, Measurement) and not m.non_finite()
    assert set(m.metrics) == {"acc_parity", "acc_dms", "loss_parity", "loss_dms",
                              "accuracy", "loss"}
    assert m.metrics["accuracy"] == pytest.approx(
        (m.metrics["acc_parity"] + m.metrics["acc_dms"]) / 2)
    assert m.metrics["loss"] == pytest.approx(
        (m.metrics["loss_parity"] + m.metrics["loss_dms"]) / 2)
    # One model per task, sized to the task's vocabulary; costs are the largest.
    assert m.costs["params"] == count_params(_model(6).build()) > count_params(_model(2).build())
    assert m.costs["latency_ms"] > 0
    # Curves of both tasks, renamed, with the second task's steps after the first's.
    steps = {name: [p["step"] for p in m.curve if p["name"] == name]
             for name in ("loss_parity", "loss_dms")}
    assert steps == {"loss_parity": [4, 8, 12], "loss_dms": [16, 20, 24]}
    assert {"eval_accuracy_parity", "eval_accuracy_dms"} <= {p["name"] for p in m.curve}
    assert ctx.curve == m.curve


def test_same_seed_same_result_and_tasks_are_independent() -> None:
    a = _tiny()(_model(), Context(seed=7))
    b = _tiny()(_model(), Context(seed=7))
    assert a.metrics == b.metrics
    c = _tiny()(_model(), Context(seed=8))
    assert c.metrics["loss_parity"] != a.metrics["loss_parity"]
    # A task's result does not depend on the other tasks of the suite.
    alone = _tiny({"dms": TASKS["dms"]})(_model(), Context(seed=7))
    assert alone.metrics["acc_dms"] == a.metrics["acc_dms"] == alone.metrics["accuracy"]


def test_budget_and_fixed_vocabulary() -> None:
    m = _tiny(match_vocab=False)(_model(), Context(seed=0, budget={"steps": 3}))
    assert max(p["step"] for p in m.curve) == 6  # 3 steps per task
    assert m.costs["params"] == count_params(_model(6).build())


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="vocab_size=4 is smaller than the largest task"):
        _tiny()(_model(4), Context())
    with pytest.raises(ValueError, match="'bad name'"):
        MultiTaskEvaluator(tasks={"bad name": TASKS["dms"]})
    with pytest.raises(ValueError, match="at least one task"):
        MultiTaskEvaluator(tasks={})
    with pytest.raises(TypeError, match="'x'"):
        MultiTaskEvaluator(tasks={"x": object()})


def test_evaluators_are_picklable_and_hashable() -> None:
    ev = mad_evaluator()
    assert pickle.loads(pickle.dumps(ev)) == ev
    assert ev.task_names == ["in_context_recall", "fuzzy_recall", "noisy_recall",
                             "selective_copying", "compression", "memorization"]
    assert hash(_tiny()) == hash(MultiTaskEvaluator(tasks=list(TASKS.items()), steps=12,
                                                    batch_size=8, eval_examples=32,
                                                    report_every=4))


def test_recall_gap_script_imports_without_running() -> None:
    path = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "recall_gap.py")
    spec = importlib.util.spec_from_file_location("recall_gap", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archs = module.architectures(extras=("NoSuchMixer",))
    assert len(archs) == 3
    rows = [{"model": "m", "level": "easy", "seed": s, "accuracy": a, "params": 10,
             "state": "fixed"} for s, a in ((0, 0.5), (1, 1.0))]
    assert "0.750 (0.50-1.00)" in module.format_table(rows)
