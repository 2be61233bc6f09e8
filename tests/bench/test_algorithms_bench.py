"""`memnas bench algorithms` on the tabular benchmark."""

from __future__ import annotations

import pyglove as pg

from memnas.bench import algorithms as bench


def test_quick_bench_returns_its_figures(tmp_path):
    png = tmp_path / "curves.png"
    out = bench.run(quick=True, png=str(png))
    assert out["seeds"] == 3 and out["table_size"] == out["budget"] > 200
    ran = {"random", "evolution", "mcts", "tpe"}  # all registered: none skipped
    assert set(out["evals_to_top1pct"]) == ran and out["skipped"] == []
    for name in ran:
        per_seed = out["evals_to_top1pct_per_seed"][name]
        assert len(per_seed) == 3
        assert all(v is None or 1 <= v <= out["budget"] for v in per_seed)
        assert len(out["curves"][name]["median"]) == out["budget"]
    assert set(out["stalled"]) == ran and out["proposal_cap"] == 4 * out["budget"]
    assert out["ratio_to_random"]["random"] == 1.0 and 0 < out["threshold"] <= 1
    assert png.exists() and png.stat().st_size > 1000


def test_an_unregistered_algorithm_is_skipped_and_named(tmp_path, capsys):
    out = bench.run(seeds=1, budget=5, png=str(tmp_path / "none.png"),
                    algorithms=("no_such_algorithm",))
    assert out["skipped"] == ["no_such_algorithm"] and out["evals_to_top1pct"] == {}
    assert out["curves"] == {} and not (tmp_path / "none.png").exists()
    assert "no_such_algorithm: skipped" in capsys.readouterr().out


def test_search_curve_counts_distinct_evaluations():
    space = pg.Dict(a=pg.oneof([0, 1, 2]), b=pg.oneof([0, 1]))
    spec = pg.dna_spec(space)
    from memnas.tabular.table import all_dnas, dna_key

    rewards = {dna_key(d): float(i) for i, d in enumerate(all_dnas(space))}
    curve, proposals = bench.search_curve("random", 0, budget=6, rewards=rewards, spec=spec)
    assert len(curve) == 6 and curve[-1] == 5.0 and proposals >= 6
    assert curve == sorted(curve)
    assert bench.evals_to_reach(curve, 5.0) == curve.index(5.0) + 1
    assert bench.evals_to_reach([0.1, 0.2], 0.5) is None
    q = bench.quantile_curves([[1.0, 2.0], [3.0]], budget=3)
    assert q["median"] == [2.0, 2.5, 2.5]
