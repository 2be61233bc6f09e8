"""`memnas bench grokking --quick`: the JSON's keys, explicit "not reached", the PNG."""

from __future__ import annotations

import json
import math

import pytest

from memnas.bench import available, run_bench
from memnas.bench.grokking import NOT_REACHED, ROLES

pytestmark = pytest.mark.usefixtures("one_thread")


def _steps(v):
    return math.inf if v == NOT_REACHED else v


def test_quick_grokking_bench_writes_its_figures_and_curves(tmp_path, capsys):
    assert "grokking" in available()
    path = tmp_path / "grok.json"
    run_bench("grokking", json_path=str(path), quick=True, png_dir=str(tmp_path))
    out = json.loads(path.read_text())
    assert out["seeds"] >= 3 and set(out["steps_to_95"]) == set(ROLES)
    assert out["sparsity"] == pytest.approx(0.5, abs=1e-3) and 0 < out["remaining"] < 1
    for role in ROLES:
        seeds = out["per_seed"][role]
        assert len(seeds) == out["seeds"]
        for v in seeds + [out["steps_to_95"][role]]:
            assert v == NOT_REACHED or (math.isfinite(v) and 0 < v <= out["step_cap"])
        assert out["reached"][role] == sum(v != NOT_REACHED for v in seeds)
        # The median over seeds, a run that never got there counting as slower than any.
        ranked = sorted(seeds, key=_steps)
        middle = [_steps(v) for v in ranked[(len(ranked) - 1) // 2:len(ranked) // 2 + 1]]
        assert _steps(out["steps_to_95"][role]) == sum(middle) / len(middle)
        mean = sum(map(_steps, seeds)) / len(seeds)
        assert _steps(out["mean_steps_to_95"][role]) == pytest.approx(mean)
        curve = out["curves"][role][0]
        assert len(curve["step"]) == len(curve["heldout_accuracy"]) > 0
    sooner = [_steps(out["per_seed"]["ticket"][c]) < min(
        _steps(out["per_seed"]["dense"][c]), _steps(out["per_seed"]["random_prune"][c]))
        for c in range(out["seeds"])]
    assert out["ticket_sooner"] == sooner
    for role in ("dense", "random_prune"):
        assert out["ticket_sooner_than"][role] == sum(
            _steps(t) < _steps(o) for t, o in zip(out["per_seed"]["ticket"], out["per_seed"][role]))
    assert (tmp_path / "grokking-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "steps to 95% held out" in capsys.readouterr().out
