"""GPU trials: memory shares of a packed GPU, out-of-GPU-memory failures and their one retry."""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

import memnas
import toyspace
from memnas.errors import ConfigError
from memnas.measurement import Context
from memnas.records import OOM, out_of_memory_reason
from memnas.runner._trial import (CONTEXT_RESERVE_BYTES, is_out_of_memory, memory_fraction,
                                  prepare_gpu, run_trial)
from memnas.store import Store

GIB = 2**30
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SEEN: list[tuple[int, float]] = []   # (trial number, ctx.batch_scale) of every evaluation
STOP: list[str] = []                 # "interrupt": the next half-batch run raises Ctrl-C


def _reset(*stop: str) -> None:
    SEEN.clear()
    STOP[:] = list(stop)


def oom_on_trial_1(p, ctx):
    """Runs out of GPU memory on trial 1 at full batch; fits at half batch."""
    SEEN.append((ctx.trial, ctx.batch_scale))
    if ctx.trial == 1 and ctx.batch_scale == 0.5 and "interrupt" in STOP:
        STOP.remove("interrupt")
        raise KeyboardInterrupt
    if ctx.trial == 1 and ctx.batch_scale == 1:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return toyspace.evaluate(p, ctx)


def oom_always_on_trial_1(p, ctx):
    """Runs out of GPU memory on trial 1 at any batch (a RuntimeError, as older torch)."""
    SEEN.append((ctx.trial, ctx.batch_scale))
    if ctx.trial == 1 and ctx.batch_scale == 0.5 and "interrupt" in STOP:
        STOP.remove("interrupt")
        raise KeyboardInterrupt
    if ctx.trial == 1:
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0)")
    return toyspace.evaluate(p, ctx)


def _exp(url: str, evaluator, **kw) -> memnas.Experiment:
    return memnas.Experiment(name="gpu", space=toyspace.point_space(), evaluator=evaluator,
                             algorithm="random", objectives={"accuracy": "max"}, store=url,
                             cache=False, **kw)


def _rows(url: str) -> dict[int, dict]:
    s = Store(url, read_only=True)
    try:
        return {t["number"]: t for t in s.trials(s.experiment("gpu")["id"])}
    finally:
        s.close()


# -- arithmetic and wording ------------------------------------------------------------
def test_memory_fraction_caps_shared_gpus_only():
    for whole in (0, 0.0, 1, 1.0, 2, -0.5, math.nan, math.inf, True, None, "0.5"):
        assert memory_fraction(whole) is None, whole
    h200 = 141 * 10**9
    assert memory_fraction(0.25, h200) == pytest.approx(0.25 - CONTEXT_RESERVE_BYTES / h200)
    assert memory_fraction(0.5) == pytest.approx(0.49)        # GPU size unknown: 1% reserve
    for share in (0.5, 0.25, 0.125):                           # shares and contexts fit
        n = round(1 / share)
        assert n * memory_fraction(share, 16 * GIB) * 16 * GIB + n * CONTEXT_RESERVE_BYTES \
            <= 16 * GIB
    assert memory_fraction(0.25, GIB) == 0.125                 # never below half the share


def test_out_of_memory_reason_is_one_line():
    assert out_of_memory_reason() == "out of GPU memory (peak unknown)"
    assert out_of_memory_reason(30 * GIB, 80 * GIB) == \
        "out of GPU memory (peak 30.00 GiB of 80.00 GiB)"
    assert out_of_memory_reason(19.5 * GIB, 80 * GIB, 0.25, 0.5) == (
        "out of GPU memory (peak 19.50 GiB of 20.00 GiB, its 0.25 share of the GPU's "
        "80.00 GiB) at batch scale 0.5")


def test_out_of_memory_errors_are_told_apart():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 MiB"))
    assert not is_out_of_memory(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_out_of_memory(MemoryError())


def test_a_worker_with_a_gpu_share_and_no_cuda_runs_on_the_cpu():
    prepare_gpu(0.25)                  # no CUDA here: nothing to cap, nothing raised
    ctx = Context(num_gpus=0.25)
    out = run_trial(lambda p, c: {"accuracy": float(c.device == "cpu")}, None, ctx)
    assert out.status == "completed" and out.metrics == {"accuracy": 1.0}
    out = run_trial(oom_on_trial_1, None, Context(trial=1, num_gpus=0.25))
    assert (out.status, out.error, out.error_kind) == \
        ("failed", "out of GPU memory (peak unknown)", OOM)


# -- through the driver, into a real store ---------------------------------------------
def test_out_of_memory_fails_its_trial_in_one_line_and_the_search_goes_on(sqlite_url):
    _reset()
    df = _exp(sqlite_url, oom_on_trial_1).run(max_trials=4, executor="local").trials()
    df = df.set_index("number")
    assert df.loc[1, "status"] == "failed" and df.loc[1, "attempt"] == 1
    assert df.loc[1, "error"] == "out of GPU memory (peak unknown)"
    assert (df.drop(index=1)["status"] == "completed").all() and len(df) == 4
    assert [n for n, _ in SEEN] == [0, 1, 2, 3]                 # not run again
    assert "batch_scale" not in df.columns


def test_oom_retry_runs_the_trial_once_more_at_half_batch(sqlite_url):
    _reset()
    df = _exp(sqlite_url, oom_on_trial_1, oom_retry=True).run(
        max_trials=4, executor="local").trials().set_index("number")
    assert (df["status"] == "completed").all() and len(df) == 4
    assert df.loc[1, "attempt"] == 2 and df.loc[1, "batch_scale"] == 0.5
    assert df.drop(index=1)["batch_scale"].isna().all()
    assert [s for n, s in SEEN if n == 1] == [1.0, 0.5]


def test_an_evaluator_out_of_memory_again_fails_after_exactly_two_attempts(sqlite_url):
    _reset()
    df = _exp(sqlite_url, oom_always_on_trial_1, oom_retry=True, max_attempts=5).run(
        max_trials=4, executor="local").trials().set_index("number")
    assert df.loc[1, "status"] == "failed" and df.loc[1, "attempt"] == 2
    assert df.loc[1, "error"] == "out of GPU memory (peak unknown) at batch scale 0.5"
    assert _rows(sqlite_url)[1]["costs"] == {"batch_scale": 0.5}   # a failed trial's: stored
    assert (df.drop(index=1)["status"] == "completed").all() and len(df) == 4
    assert [s for n, s in SEEN if n == 1] == [1.0, 0.5]


@pytest.mark.parametrize("evaluator,status", [(oom_on_trial_1, "completed"),
                                              (oom_always_on_trial_1, "failed")])
def test_a_resumed_run_keeps_the_half_batch_and_never_halves_twice(sqlite_url, evaluator,
                                                                    status):
    _reset("interrupt")                # Ctrl-C while the half-batch retry runs
    with pytest.raises(KeyboardInterrupt):
        _exp(sqlite_url, evaluator, oom_retry=True).run(max_trials=4, executor="local")
    row = _rows(sqlite_url)[1]
    assert (row["status"], row["attempt"], row["costs"]) == ("pending", 2, {"batch_scale": 0.5})
    assert row["error"].startswith("out of GPU memory (peak unknown)")
    _exp(sqlite_url, evaluator, oom_retry=True).run(max_trials=4, executor="local")
    rows = _rows(sqlite_url)
    assert rows[1]["status"] == status and rows[1]["attempt"] == 3
    assert rows[1]["costs"]["batch_scale"] == 0.5
    assert [s for n, s in SEEN if n == 1] == [1.0, 0.5, 0.5]
    assert sorted(rows) == [0, 1, 2, 3] and sorted(n for n, _ in SEEN).count(2) == 1


def test_oom_retry_is_a_checked_option():
    space = toyspace.point_space()
    for bad in ({"oom_retry": "yes"}, {"oom_retry": True, "max_attempts": 1}):
        with pytest.raises(ConfigError, match="oom_retry"):
            memnas.Experiment(name="x", space=space, evaluator=toyspace.evaluate, **bad)
    exp = memnas.Experiment(name="x", space=space, evaluator=toyspace.evaluate)
    assert exp.oom_retry is False and exp.describe()["config"]["oom_retry"] is False


# -- on a CUDA machine -----------------------------------------------------------------
def report_share(p, ctx):
    """Holds 256 MiB on the GPU until four trials hold theirs (60 s at most); returns its
    device, memory cap and peak, and how many trials held theirs at once."""
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=ctx.device)
    folder = os.environ["MEMNAS_TEST_DIR"]
    open(os.path.join(folder, f"holding-{ctx.trial}"), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    together, peak = len(os.listdir(folder)), torch.cuda.max_memory_allocated()
    del block
    return memnas.Measurement(
        metrics={"accuracy": float(ctx.device == "cuda")},
        costs={"fraction": torch.cuda.get_per_process_memory_fraction(),
               "peak": float(peak), "together": float(together)})


def grab_half_the_gpu(p, ctx):
    """Allocates half the GPU: over the share of a trial on a quarter of it."""
    total = torch.cuda.get_device_properties(0).total_memory
    block = torch.empty(total // 2, dtype=torch.uint8, device="cuda")
    return {"accuracy": float(block.numel() > 0)}


@CUDA
@pytest.mark.slow
def test_four_trials_share_one_gpu_each_capped_at_its_share(sqlite_url, tmp_path,
                                                             monkeypatch):
    (tmp_path / "holding").mkdir()
    monkeypatch.setenv("MEMNAS_TEST_DIR", str(tmp_path / "holding"))   # Ray's workers too
    exp = _exp(sqlite_url, report_share, resources={"num_cpus": 0.5, "num_gpus": 0.25})
    df = exp.run(max_trials=4, workers=4, executor="ray").trials()
    assert (df["status"] == "completed").all() and (df["accuracy"] == 1.0).all()
    total = torch.cuda.get_device_properties(0).total_memory
    assert df["fraction"].tolist() == [pytest.approx(memory_fraction(0.25, total))] * 4
    assert (df["peak"] >= 256 * 2**20).all() and (df["peak"] < 300 * 2**20).all()
    assert (df["together"] == 4).all()                          # all four ran at once


@CUDA
def test_a_real_oom_on_a_shared_gpu_fails_in_one_line(sqlite_url):
    try:
        df = _exp(sqlite_url, grab_half_the_gpu, resources={"num_gpus": 0.25}).run(
            max_trials=2, executor="local").trials()
    finally:
        prepare_gpu(0)                 # this process's cap undone (CUDA is started)
    assert (df["status"] == "failed").all() and (df["attempt"] == 1).all()
    for error in df["error"]:
        assert error.startswith("out of GPU memory (peak ") and "its 0.2" in error, error
        assert "\n" not in error
    assert torch.cuda.get_per_process_memory_fraction() == 1.0
