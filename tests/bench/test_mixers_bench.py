"""Test of `memnas bench mixers` (quick, on a subset of the mixers)."""

from __future__ import annotations

import json

import pytest

from memnas.bench import available
from memnas.bench import mixers as bench


@pytest.mark.usefixtures("one_thread")  # as the search-space tests: torch on one thread
def test_quick_run_shape(capsys: pytest.CaptureFixture[str]) -> None:
    figures = bench.run(
        quick=True, mixers=["LinearAttention", "MixtureOfMemories", "SoftmaxAttention", "ELMNeuron"],
        seq_len=48,
    )
    json.dumps(figures)
    assert "mixers" in available()
    # SoftmaxAttention has no reference_forward: skipped.
    assert set(figures["mixers"]) == {"LinearAttention", "MixtureOfMemories"}
    for name, row in figures["mixers"].items():
        assert {"speedup", "max_abs_err", "chunked_ms", "reference_ms"} <= set(row), row
        assert row["speedup"] > 0 and row["chunked_ms"] > 0 and row["reference_ms"] > 0
        assert 0 <= row["max_abs_err"] < 1e-5, name
        assert 0 <= row["max_abs_err_f32"] < 1e-3, name
    # The ELM neuron has no parallel form: timed apart, not in the speed-up table.
    assert set(figures["per_token"]) == {"ELMNeuron"}
    assert figures["per_token"]["ELMNeuron"]["tokens_per_s"] > 0
    assert figures["config"]["seq_len"] == 48
    out = capsys.readouterr().out
    assert "LinearAttention" in out and "speedup" in out and "no parallel form" in out


def test_unknown_mixer_is_named() -> None:
    with pytest.raises(KeyError, match="Nope"):
        bench.run(quick=True, mixers=["Nope"])
