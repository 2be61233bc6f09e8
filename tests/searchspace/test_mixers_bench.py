"""Test of `memnas bench mixers` (quick, on a subset of the mixers)."""

from __future__ import annotations

import json

import pytest
import torch

from memnas.bench import available
from memnas.bench import mixers as bench


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors gain nothing from threads; one keeps a loaded CPU from stalling them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_run_shape(capsys: pytest.CaptureFixture[str]) -> None:
    figures = bench.run(
        quick=True, mixers=["LinearAttention", "MixtureOfMemories", "SoftmaxAttention"], seq_len=48
    )
    json.dumps(figures)
    assert "mixers" in available()
    # SoftmaxAttention has no reference_forward: skipped.
    assert set(figures["mixers"]) == {"LinearAttention", "MixtureOfMemories"}
    for name, row in figures["mixers"].items():
        assert {"speedup", "max_abs_err", "chunked_ms", "reference_ms"} <= set(row), row
        assert row["speedup"] > 0 and row["chunked_ms"] > 0 and row["reference_ms"] > 0
        assert 0 <= row["max_abs_err"] < 1e-5, name
    assert figures["config"]["seq_len"] == 48
    out = capsys.readouterr().out
    assert "LinearAttention" in out and "speedup" in out


def test_unknown_mixer_is_named() -> None:
    with pytest.raises(KeyError, match="Nope"):
        bench.run(quick=True, mixers=["Nope"])
