"""`memnas bench gpu`: one line and ``{"cuda": false}`` without CUDA; its pieces on the CPU."""

from __future__ import annotations

import json
import random

import pyglove as pg
import pytest
import torch
from click.testing import CliRunner

from memnas.bench import available, gpu
from memnas.cli import main
from memnas.measurement import Context

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_bench_is_listed():
    assert "gpu" in available()


@NO_CUDA
def test_without_cuda_it_says_so_in_one_line(capsys):
    assert gpu.run(quick=True) == {"cuda": False}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA GPU" in out


@NO_CUDA
def test_without_cuda_the_command_writes_cuda_false(tmp_path):
    path = tmp_path / "gpu.json"
    done = CliRunner().invoke(main, ["bench", "gpu", "--json", str(path)])
    assert done.exit_code == 0, done.output
    assert json.loads(path.read_text()) == {"cuda": False}


def test_quick_setup_trains_a_candidate_and_adds_no_gpu_peak_on_the_cpu():
    space, evaluator = gpu._setup(quick=True, steps=None)
    assert evaluator.evaluator.steps == 50
    candidate = pg.materialize(space, pg.random_dna(pg.dna_spec(space), random.Random(2)))
    m = evaluator(candidate, Context(seed=1, budget={"steps": 2}))
    assert 0.0 <= m.metrics["accuracy"] <= 1.0 and "bench_peak_bytes" not in m.costs


def test_busy_sampler_averages_its_readings():
    sampler = gpu.BusySampler(lambda: [50.0, 70.0], every_s=0.01)
    sampler.start()
    while len(sampler.samples) < 3:
        sampler.stopping.wait(0.01)
    assert sampler.stop() == 60.0
    assert gpu.BusySampler(None).stop() is None            # nothing to read: no figure
    assert gpu.busy_reader()[0] in ("nvml (pynvml)", "nvidia-smi", "none")


@CUDA
@pytest.mark.slow
def test_quick_bench_on_a_gpu_reports_each_packing():
    out = gpu.run(quick=True, trials=4)
    assert out["cuda"] is True and set(out["packings"]) == {1, 2, 4}
    for k, p in out["packings"].items():
        assert p["completed"] == 4 and p["num_gpus"] == 1 / k, p
        assert p["trials_per_hour"] > 0 and p["peak_gib_max"] > 0
    assert set(out["speedup"]) == {2, 4}
