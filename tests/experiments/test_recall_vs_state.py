"""Test of experiments/recall_vs_state.py: real training of two tiny families, table and PNG."""

from __future__ import annotations

import importlib.util
import os

import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "recall_vs_state.py")


def _load():
    spec = importlib.util.spec_from_file_location("recall_vs_state", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_thread")
def test_rows_table_and_figure(tmp_path, monkeypatch) -> None:
    exp = _load()
    monkeypatch.setitem(exp.QUICK, "steps", 5)
    monkeypatch.setitem(exp.QUICK, "widths", (16, 32))
    rows = exp.run(quick=True, names=["LinearAttention"], verbose=False)
    assert {r["family"] for r in rows} == {"SoftmaxAttention", "LinearAttention"}
    assert all(r["accuracy"] is not None and r["state_bytes"] > 0 for r in rows)
    by = {(r["family"], r["width"]): r["state_bytes"] for r in rows}
    # Attention's KV cache grows linearly with width, linear attention's state quadratically.
    assert by[("SoftmaxAttention", 32)] == 2 * by[("SoftmaxAttention", 16)]
    assert by[("LinearAttention", 32)] > 3 * by[("LinearAttention", 16)]
    table = exp.format_table(rows)
    assert "SoftmaxAttention" in table and "KiB" in table
    png = tmp_path / "fig.png"
    exp.plot(rows, str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="'Nope'"):
        _load().families(["Nope"])
