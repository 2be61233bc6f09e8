"""Tests of op dispatch: torch on the CPU, fla's kernels only on CUDA and only when asked or found."""

from __future__ import annotations

import subprocess
import sys

import pytest

import memnas.ops
from memnas.ops.backend import FLA_KERNELS, fla_installed, resolve


def test_torch_and_auto_on_the_cpu_run_memnas_ops() -> None:
    for op in ("delta_rule", "gated_delta_rule", "gla", "simple_gla", "ssd", "mlstm"):
        assert resolve(op, "torch", cuda=False) is getattr(memnas.ops, op)
        assert resolve(op, "auto", cuda=False) is getattr(memnas.ops, op)
    # Ops fla does not ship stay on torch under "auto", even on CUDA.
    assert resolve("selective_scan", "auto", cuda=True) is memnas.ops.selective_scan


def test_bad_backends_are_named(monkeypatch) -> None:
    with pytest.raises(ValueError, match="'triton'"):
        resolve("gla", "triton", cuda=False)
    with pytest.raises(ValueError, match="CPU"):
        resolve("gla", "fla", cuda=False)
    with pytest.raises(ValueError, match="'mlstm'"):
        resolve("mlstm", "fla", cuda=True)
    monkeypatch.setenv("MEMNAS_OPS_BACKEND", "cuda")
    with pytest.raises(ValueError, match="MEMNAS_OPS_BACKEND.*'cuda'"):
        resolve("gla", None, cuda=False)
    monkeypatch.setenv("MEMNAS_OPS_BACKEND", "torch")
    assert resolve("gla", None, cuda=True) is memnas.ops.gla


def test_a_cpu_forward_of_every_mixer_imports_neither_fla_nor_triton() -> None:
    code = (
        "import sys, torch, pyglove as pg\n"
        "from memnas.searchspace import registered_mixers\n"
        "for name, cls in registered_mixers().items():\n"
        "    space = cls.space()\n"
        "    spec = space if pg.is_deterministic(space) else pg.materialize(space, pg.dna_spec(space).first_dna())\n"
        "    spec.build(16)(torch.randn(1, 5, 16))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fla', 'triton')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not fla_installed(), reason="flash-linear-attention is not installed")
def test_auto_takes_fla_on_cuda_when_installed() -> None:
    for op in FLA_KERNELS:
        assert resolve(op, "auto", cuda=True).__module__.startswith("fla.")
