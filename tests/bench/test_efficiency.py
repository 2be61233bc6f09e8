"""`memnas bench efficiency` on a tiny configuration (one seed, small caps)."""

from __future__ import annotations

import json

import pyglove as pg
import pytest

from memnas.bench import efficiency, run_bench
from memnas.errors import ConfigError
from memnas.measurement import Context
from memnas.tabular.table import TabularEvaluator, all_dnas, dna_key
from memnas.tabular.v2 import TABLE_V2_PATH


def test_tabular_evaluator_reports_its_learning_curve():
    ev = TabularEvaluator(path=TABLE_V2_PATH)
    table = ev.table()
    key = next(iter(table.rows))
    dna = next(d for d in all_dnas(table.space()) if dna_key(d) == key)
    cand = pg.materialize(table.space(), dna)
    ctx = Context(budget={"steps": 200})
    m = ev(cand, ctx)
    acc = [p for p in ctx.curve if p["name"] == "accuracy"]
    assert [p["step"] for p in acc] == [50, 100, 200]
    assert acc[-1]["value"] == m.metrics["accuracy"]
    ctx = Context(budget={"steps": 400}, resume={"steps": 100})
    ev(cand, ctx)
    assert sorted({p["step"] for p in ctx.curve}) == [200, 400]


def test_tiny_efficiency_run(tmp_path, capsys):
    out = efficiency.run(seeds=1, cap=40, nsga2_evals=8, png_dir=str(tmp_path),
                         methods=("random", "asha", "evolution", "nsga2", "mo_asha",
                                  "warm_start"))
    assert out["seeds"] == 1
    assert set(out["compute_to_top1pct"]) == {"random", "asha", "evolution"}
    det = out["details"]
    for m, value in out["compute_to_top1pct"].items():
        per = det["per_seed"]["compute_to_top1pct"][m]
        assert value == per["compute"][0] > 0
        assert per["trials"][0] <= 40
        if not per["reached"][0]:
            assert per["trials"][0] == 40 and det["unreached"][m] == 1
    assert out["evals_to_nsga2_hv200"]["nsga2"] == 8
    assert det["nsga2_hv200"]["median"] > 0
    assert out["warm_start_evals_ratio"] > 0
    assert len(out["png"]) == 3 and all((tmp_path / p.split("/")[-1]).exists()
                                        for p in out["png"])
    json.dumps(out)
    assert "simulated training seconds" in capsys.readouterr().out


def test_compute_counts_resumed_rungs_once(tmp_path):
    b = efficiency.Bench(str(tmp_path))
    recs = b.search("s", "asha", efficiency._single_setup("asha"), 0, 30, lambda r: False,
                    chunk=30)
    assert len(recs) == 30 and {r["steps"] for r in recs} >= {50, 100}
    # a promotion pays only the steps it adds: never more than training from scratch
    for r in recs:
        full = b.evaluator.lookup(r["key"], budget=r["steps"]).costs["simulated_time"]
        assert 0 < r["spent"] <= full + 1e-9


def test_run_bench_refuses_an_option_the_bench_does_not_take():
    with pytest.raises(ConfigError, match="no option 'seeds'"):
        run_bench("table", seeds=3)
