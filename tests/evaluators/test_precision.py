"""The trainers on accelerators: autocast precision, GradScaler checkpoints, torch.compile,
out-of-memory batch scaling and GPU costs (real, tiny runs; GPU tests skip without one)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from memnas.errors import ConfigError
from memnas.evaluators import (MQAR, LanguageModelEvaluator, MultiTaskEvaluator, TextCorpus,
                               TrainEvaluator, accel)
from memnas.evaluators.digits import Digits
from memnas.evaluators.sparse_training import SparseTrainEvaluator
from memnas.measurement import Context, Measurement
from memnas.searchspace import Block, LinearAttention, SequenceModel, SoftmaxAttention
from memnas.searchspace.sparse import MLP
from memnas.store import artifacts

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = MQAR(vocab_size=32, seq_len=16, num_kv_pairs=2)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(*mixers) -> SequenceModel:
    return SequenceModel(vocab_size=32, d_model=16, max_len=16,
                         layers=[Block(m, 1) for m in mixers or (SoftmaxAttention(2),)])


def _trainer(**kw) -> TrainEvaluator:
    # eval_examples == latency_batch_size: one shape to compile for evaluating and timing
    return TrainEvaluator(**{**dict(task=TASK, steps=8, batch_size=8, eval_examples=16,
                                    latency_batch_size=16, report_every=4), **kw})


def _stored(artifact: dict) -> dict:
    return artifacts.decode(artifacts.encode(artifact))


def _plain_floats(m: Measurement) -> None:
    """Every metric, cost and curve value a finite Python float (what the store keeps)."""
    values = [*m.metrics.values(), *m.costs.values(), *(p["value"] for p in m.curve)]
    assert values and all(type(v) is float and math.isfinite(v) for v in values), values


class _Recorded:
    """MQAR, recording the batch sizes it is asked for (a real task all the same)."""

    def __init__(self, task: MQAR) -> None:
        self.task, self.vocab_size, self.sizes = task, task.vocab_size, []

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.sizes.append(n)
        return self.task.batch(n, seed)


def test_bf16_autocast_on_the_cpu_trains_and_returns_float32_results() -> None:
    spec = _model(SoftmaxAttention(2), LinearAttention(1))
    fp32 = _trainer()(spec, Context(seed=3))
    bf16 = _trainer(precision="bf16")(spec, Context(seed=3, checkpoint=True))
    _plain_floats(bf16)
    assert bf16.metrics["loss"] == pytest.approx(fp32.metrics["loss"], rel=0.05)
    assert bf16.metrics["loss"] != fp32.metrics["loss"]            # it did run in bfloat16
    # weights and AdamW state stay float32; bf16 needs no scaler; the known costs are fp32's
    assert {a.dtype for a in bf16.artifact["model"].values()} == {np.dtype(np.float32)}
    assert "scaler" not in bf16.artifact
    known = _trainer().costs(spec)
    assert {k: bf16.costs[k] for k in known} == known
    assert "peak_memory_bytes" not in bf16.costs and "compile_s" not in bf16.costs


def test_a_bad_setting_is_refused_in_one_line_at_construction() -> None:
    corpus = TextCorpus.from_array(np.random.default_rng(0).integers(0, 32, 2000), seq_len=16)
    makers = [lambda **kw: _trainer(**kw), lambda **kw: MultiTaskEvaluator(tasks={"a": TASK}, **kw),
              lambda **kw: LanguageModelEvaluator(corpus=corpus, **kw),
              lambda **kw: SparseTrainEvaluator(**kw)]
    for make in makers:
        for bad, match in ((dict(precision="fp8"), "precision must be one of .*got 'fp8'"),
                           (dict(precision="FP16"), "got 'FP16'"),
                           (dict(compile="yes"), "compile must be True or False, got 'yes'"),
                           (dict(compile_backend="turbo"), "compile_backend .* got 'turbo'")):
            with pytest.raises(ConfigError, match=match) as info:
                make(**bad)
            assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="ctx.batch_scale must be a positive finite number, got 0"):
        ctx = Context()
        ctx.batch_scale = 0
        _trainer(steps=1)(_model(), ctx)


def test_fp16_on_the_cpu_uses_a_grad_scaler_that_checkpoints_and_resumes() -> None:
    # fp16 is allowed on the CPU (torch's CPU autocast and GradScaler): the same code path
    # as on a GPU, slower. Its scaler's state travels in the checkpoint.
    trainer, spec = _trainer(precision="fp16"), _model()
    budget = {"steps": 8, "max_steps": 8}
    whole = trainer(spec, Context(seed=4, budget=budget, checkpoint=True))
    _plain_floats(whole)
    assert whole.artifact["scaler"]["scale"] == 65536.0               # no overflow here
    assert whole.artifact["scaler"]["_growth_tracker"] == 8          # 8 good steps
    low = trainer(spec, Context(seed=4, budget={**budget, "steps": 4}, checkpoint=True))
    saved = _stored(low.artifact)
    assert saved["scaler"]["_growth_tracker"] == 4
    high = trainer(spec, Context(seed=9, budget=budget, checkpoint=True, resume=saved))
    assert high.metrics == pytest.approx(whole.metrics, rel=1e-5)
    assert high.artifact["scaler"] == whole.artifact["scaler"]         # loaded, then 4 more
    saved["scaler"]["scale"] = 1024.0                                 # the loaded one is used
    assert trainer(spec, Context(seed=9, budget=budget, checkpoint=True, resume=saved)
                   ).artifact["scaler"]["scale"] == 1024.0
    # an fp32 checkpoint resumes under fp16 with a fresh scaler
    fp32_low = _trainer()(spec, Context(seed=4, budget={**budget, "steps": 4}, checkpoint=True))
    fresh = trainer(spec, Context(budget=budget, checkpoint=True,
                                  resume=_stored(fp32_low.artifact)))
    assert fresh.artifact["scaler"]["_growth_tracker"] == 4


def test_compile_with_a_cheap_backend_stores_compile_s_and_plain_checkpoints() -> None:
    spec = _model()
    eager = _trainer(steps=4)(spec, Context(seed=2))
    compiled = _trainer(steps=4, compile=True, compile_backend="eager")(
        spec, Context(seed=2, checkpoint=True))
    _plain_floats(compiled)
    assert compiled.costs["compile_s"] > 0 and "compile_s" not in eager.costs
    assert compiled.metrics == pytest.approx(eager.metrics, rel=1e-4)
    assert not [k for k in compiled.artifact["model"] if "_orig_mod" in k]   # the module's names
    assert set(compiled.artifact["model"]) == set(spec.build().state_dict())


def test_the_inductor_backend_compiles_when_a_compiler_is_there() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None and not torch.cuda.is_available():
        pytest.skip("inductor on the CPU needs a C compiler")
    net = accel.compile_model(torch.nn.Linear(4, 3), "inductor")
    clock = accel.CompileClock("cpu", True)
    try:
        with torch.no_grad():
            out = net(torch.ones(2, 4))
    except Exception as error:  # inductor's errors when it finds no working compiler
        if "compil" in f"{type(error).__name__} {error}".lower():
            pytest.skip(f"inductor cannot compile here: {type(error).__name__}")
        raise
    clock.lap()
    assert out.shape == (2, 3) and clock.costs()["compile_s"] >= 0


def test_batch_scale_halves_the_batch_and_is_recorded_as_a_cost() -> None:
    task = _Recorded(TASK)
    trainer = TrainEvaluator(task=task, steps=3, batch_size=8, eval_examples=8)
    plain = trainer(_model(), Context(seed=1))
    assert task.sizes[-3:] == [8, 8, 8] and "batch_size" not in plain.costs   # as before
    ctx = Context(seed=1)
    ctx.batch_scale = 0.5       # an attribute until Context has the field: either works
    halved = trainer(_model(), ctx)
    assert task.sizes[-3:] == [4, 4, 4] and halved.costs["batch_size"] == 4.0
    ctx.batch_scale = 0.01
    assert trainer(_model(), ctx).costs["batch_size"] == 1.0 and task.sizes[-1] == 1
    ctx.batch_scale = 0.5
    multi = MultiTaskEvaluator(tasks={"a": TASK, "b": TASK}, steps=2, batch_size=6,
                               eval_examples=8)
    assert multi(_model(), ctx).costs["batch_size"] == 3.0
    sparse = SparseTrainEvaluator(data=Digits(seed=0), steps=3, batch_size=60)
    assert sparse(MLP(in_features=64, hidden=[16]), ctx).costs["batch_size"] == 30.0


def test_every_trainer_takes_the_settings() -> None:
    ctx = Context(seed=1)
    multi = MultiTaskEvaluator(tasks={"a": TASK, "b": TASK}, steps=2, batch_size=4,
                               eval_examples=8, precision="bf16", compile_backend="eager")
    trainer = multi.trainer(TASK)
    assert (trainer.precision, trainer.compile, trainer.compile_backend) == ("bf16", False, "eager")
    _plain_floats(multi(_model(), ctx))
    corpus = TextCorpus.from_array(np.random.default_rng(0).integers(0, 32, 2000), seq_len=16)
    lm = LanguageModelEvaluator(corpus=corpus, steps=3, batch_size=4, eval_examples=4,
                                precision="bf16", compile=True, compile_backend="eager")
    assert lm.trainer(corpus).precision == "bf16"
    m = lm(_model(), Context(seed=1))
    _plain_floats(m)
    assert m.costs["compile_s"] > 0 and m.costs["tokens_per_s"] > 0  # from the third step
    sparse = SparseTrainEvaluator(data=Digits(seed=0), steps=6, report_every=3,
                                  precision="bf16", compile=True, compile_backend="eager")
    run = sparse(MLP(in_features=64, hidden=[16]), Context(seed=1))
    _plain_floats(run)
    assert run.costs["compile_s"] > 0 and 0 <= run.metrics["accuracy"] <= 1


def test_accelerator_helpers_change_nothing_on_the_cpu() -> None:
    x = torch.arange(6)
    assert accel.to_device(x, "cpu") is x
    assert accel.device_costs("cpu") == {}
    accel.reset_peak_memory("cpu")
    assert accel.grad_scaler("cpu", "bf16") is None and accel.grad_scaler("cpu", "fp32") is None
    assert accel.elapsed_ms(lambda: torch.ones(64, 64) @ torch.ones(64, 64), "cpu") > 0
    assert accel.scaled_batch(7, Context()) == 7 and accel.batch_costs(7, Context()) == {}
    with accel.autocast("cpu", "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with accel.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@CUDA
def test_a_trial_on_a_gpu_stores_peak_memory_and_event_timed_latency() -> None:
    ctx = Context(seed=1, num_gpus=1)
    assert ctx.device == "cuda"
    m = _trainer(precision="bf16")(_model(), ctx)
    _plain_floats(m)
    assert 0 < m.costs["peak_memory_bytes"] < torch.cuda.get_device_properties(0).total_memory
    assert m.costs["latency_ms"] > 0
    sparse = SparseTrainEvaluator(data=Digits(seed=0), steps=3, precision="bf16")(
        MLP(in_features=64, hidden=[16]), ctx)
    assert sparse.costs["peak_memory_bytes"] > 0 and sparse.costs["latency_ms"] > 0


@CUDA
def test_fp16_on_a_gpu_scales_gradients_and_resumes() -> None:
    trainer, budget = _trainer(precision="fp16"), {"steps": 8, "max_steps": 8}
    whole = trainer(_model(), Context(seed=4, num_gpus=1, budget=budget, checkpoint=True))
    low = trainer(_model(), Context(seed=4, num_gpus=1, budget={**budget, "steps": 4},
                                    checkpoint=True))
    high = trainer(_model(), Context(seed=4, num_gpus=1, budget=budget,
                                     resume=_stored(low.artifact), checkpoint=True))
    _plain_floats(high)
    assert set(whole.artifact["scaler"]) >= {"scale", "_growth_tracker"}
    assert high.artifact["scaler"]["_growth_tracker"] == whole.artifact["scaler"]["_growth_tracker"]
    assert high.metrics["loss"] == pytest.approx(whole.metrics["loss"], rel=1e-3)


@CUDA
def test_host_batches_are_pinned_and_cuda_events_time_the_device() -> None:
    x = torch.arange(1024, dtype=torch.float32)
    on_gpu = accel.to_device(x, "cuda")
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), x)
    a = torch.randn(1024, 1024, device="cuda")
    assert accel.elapsed_ms(lambda: a @ a, "cuda") > 0
    accel.reset_peak_memory("cuda")
    b = torch.empty(2**20, device="cuda")
    assert accel.device_costs("cuda")["peak_memory_bytes"] >= b.numel() * 4
