"""Data preparation and figures of the dashboard, without Streamlit."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from memnas import dashboard
from memnas.dashboard import data, plots
from memnas.pareto import pareto_mask
from memnas.store import Store, reader
from memnas.store.bulk import insert_trials

from dashboard_helpers import FAILED, SINGLE, TWO


def _trial(number, status="completed", metrics=None, costs=None, error=None):
    return {"number": number, "status": status, "summary": f"cand{number}",
            "metrics": metrics or {}, "costs": costs or {}, "error": error,
            "wall_time": 0.5, "attempt": 1, "cached_from": None, "node": "n",
            "started_at": None, "finished_at": None, "dna": [], "decisions": {},
            "candidate": "{}", "sym_hash": f"{number:064x}"}


def _frame(tmp_path, trials, objectives):
    """`reader.trials_frame` of ``trials`` written to a fresh store."""
    store = Store(f"sqlite:///{tmp_path}/frame.db")
    exp_id = store.create_experiment("t", space={}, space_hash="0" * 64,
                                     algorithm={"name": "random"}, evaluator={},
                                     objectives=dict(objectives), config={})
    insert_trials(store, exp_id, trials)
    try:
        return reader.trials_frame(store, exp_id, objectives)
    finally:
        store.close()


SYNTHETIC = [
    _trial(0, metrics={"acc": 0.5}),
    _trial(3, metrics={"acc": 0.2}),
    _trial(1, metrics={"acc": 0.7}),
    _trial(2, "failed", error="Traceback (most recent call last):\n  File x\nValueError: boom\n"),
    _trial(4, "cached", metrics={"acc": 0.9}),
    _trial(5, "running"),
]


def test_trials_frame_orders_by_number_and_flattens_values(tmp_path):
    df = _frame(tmp_path, SYNTHETIC, {"acc": "max"})
    assert list(df["number"]) == [0, 1, 2, 3, 4, 5]
    assert list(df.columns[:4]) == ["number", "status", "summary", "acc"]
    assert math.isnan(df.loc[2, "acc"])
    assert df.loc[2, "error"] == "ValueError: boom"


def test_value_names_objectives_then_metrics_then_costs(tmp_path):
    trials = [_trial(0, metrics={"b": 1, "acc": 1}, costs={"params": 1, "a": 2})]
    df = _frame(tmp_path, trials, {"params": "min"})
    assert df.attrs["values"] == ["params", "acc", "b", "a"]
    assert df.attrs["costs"] == ["a", "params"]
    assert data.value_directions(df, {"params": "min"}) == {"params": "min", "acc": "max",
                                                             "b": "max", "a": "min"}
    assert data.direction_of("a", {}, {"a"}) == "min"
    assert data.direction_of("acc", {}, {"a"}) == "max"
    assert data.direction_of("a", {"a": "max"}, {"a"}) == "max"


@pytest.mark.parametrize("direction,expected", [("max", [0.5, 0.7, 0.7, 0.9]),
                                                ("min", [0.5, 0.5, 0.2, 0.2])])
def test_best_so_far_respects_direction(tmp_path, direction, expected):
    df = _frame(tmp_path, SYNTHETIC, {"acc": direction})
    series = data.best_so_far(df, "acc", direction)
    assert list(series["number"]) == [0, 1, 3, 4]  # finished trials only, by number
    assert list(series["best"]) == expected
    improved = [b != a for a, b in zip([None] + expected, expected)]
    assert list(series["improved"]) == improved
    assert data.best_value(df, "acc", direction) == expected[-1]


def test_best_so_far_of_no_finished_trials_is_empty(tmp_path):
    df = _frame(tmp_path, [_trial(0, "failed"), _trial(1, "running")], {"acc": "max"})
    assert data.best_so_far(df, "acc", "max").empty
    assert data.best_value(df, "acc", "max") is None
    with pytest.raises(ValueError, match="'up'"):
        data.best_so_far(df, "acc", "up")


def test_pareto_flags_match_pareto_mask(two_objective_frame):
    exp, df = two_objective_frame
    directions = dict(exp["objectives"])
    info = data.pareto_info(df, "params", "accuracy", directions, hover_names=["loss"])
    done = df[df["status"] == "completed"]
    assert len(info.points) == len(done) > 3
    expected = pareto_mask(done[["params", "accuracy"]].to_numpy(), ["min", "max"])
    assert list(info.points["on_front"]) == list(expected)
    assert list(info.front["x"]) == sorted(info.front["x"])
    assert 1 <= len(info.front) <= 3  # one point per params level at most
    row = info.front.iloc[0]
    assert f"trial {row['number']}" in row["hover"] and "loss = " in row["hover"]
    assert str(row["summary"])[:20] in row["hover"]
    assert set(info.points.loc[~info.points["on_front"], "hover"]) <= {""}  # via a template


def test_pareto_info_needs_directions(tmp_path):
    df = _frame(tmp_path, SYNTHETIC, {"acc": "max"})
    with pytest.raises(ValueError, match="'params'"):
        data.pareto_info(df, "acc", "params", {"acc": "max"})


def test_experiments_summary_counts_best_and_running_time(dashboard_store):
    from memnas.dashboard import analysis

    store = Store(dashboard_store, read_only=True)
    rows = store.experiments()
    bests = {e["id"]: reader.best_values(store, e["id"], e["objectives"]) for e in rows}
    times = reader.experiment_times(store)
    trials = {e["name"]: store.trials(e["id"]) for e in rows}
    store.close()
    df = analysis.experiments_summary(rows, times, bests)
    by_name = df.set_index("name")
    assert set(by_name.index) >= {TWO, SINGLE, FAILED}
    two = by_name.loc[TWO]
    assert two["trials"] == 12 and two["done"] + two["failed"] == 12 and two["failed"] >= 1
    assert two["algorithm"] == "random" and two["objectives"] == "accuracy (max), params (min)"
    done = [t for t in trials[TWO] if t["status"] == "completed"]
    assert two["best accuracy"] == max(t["metrics"]["accuracy"] for t in done)
    assert two["best params"] == min(t["costs"]["params"] for t in done)  # a cost objective
    assert math.isnan(by_name.loc[SINGLE, "best accuracy"])  # not its objective
    assert by_name.loc[SINGLE, "best loss"] == min(t["metrics"]["loss"] for t in trials[SINGLE]
                                                   if t["status"] == "completed")
    assert by_name.loc[FAILED, "done"] == 0 and by_name.loc[FAILED, "failed"] == 2
    assert math.isnan(by_name.loc[FAILED, "best accuracy"])
    first = min(t["started_at"] for t in trials[TWO])
    last = max(t["finished_at"] for t in trials[TWO])
    assert two["running time (s)"] == pytest.approx((last - first).total_seconds())
    assert len(two["created"]) == 19


def test_small_formatters():
    assert data.algorithm_label({"name": "evolution", "options": {"population_size": 8}}) \
        == "evolution(population_size=8)"
    assert data.algorithm_label(None) == ""
    assert data.counts_of({"completed": 2, "cached": 1, "failed": 1}).done == 3


def test_plots_draw_the_data(two_objective_frame):
    exp, df = two_objective_frame
    fig = plots.plot_best_so_far(data.best_so_far(df, "params", "min"), "params", "min")
    assert [t.name for t in fig.data] == ["trials", "best so far"]
    assert "↓ min" in fig.layout.title.text
    info = data.pareto_info(df, "params", "accuracy", exp["objectives"])
    fig = plots.plot_pareto(info)
    names = [t.name for t in fig.data]
    assert names == ["trials", "front", "Pareto front"]
    assert fig.data[1].line.shape == "hv"  # params minimised on x
    assert len(fig.data[2].x) == len(info.front)
    flipped = data.pareto_info(df, "accuracy", "params", exp["objectives"])
    assert plots.plot_pareto(flipped).data[1].line.shape == "vh"
    curve = data.curve_frame([{"step": 0, "name": "loss", "value": 1.0},
                              {"step": 1, "name": "loss", "value": 0.5}])
    assert len(plots.plot_curve(curve).data) == 1


def test_import_is_cheap():
    code = ("import sys, memnas.dashboard as d; import os; assert os.path.isfile(d.app_path()); "
            "print(sorted(m for m in ('streamlit', 'plotly', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_launch_runs_streamlit_with_the_store(monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, cmd, env):
            seen.update(cmd=cmd, env=env)

        def wait(self, timeout=None):
            return 3

    monkeypatch.setattr(dashboard.subprocess, "Popen", FakePopen)
    assert dashboard.launch("sqlite:///x.db", port=8600) == 3
    cmd = seen["cmd"]
    # The warming server (`memnas.dashboard._serve`) runs `streamlit run app.py FLAGS`.
    assert cmd[:3] == [sys.executable, "-m", "memnas.dashboard._serve"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--server.headless"] == "true" and flags["--server.address"] == "127.0.0.1"
    assert flags["--server.port"] == "8600"
    assert seen["env"][dashboard.ENV_VAR] == "sqlite:///x.db"
    assert dashboard.command(open_browser=True)[4] == "false"
    with pytest.raises(ValueError, match="70000"):
        dashboard.launch("sqlite:///x.db", port=70000)


def test_pareto_mask_with_nan_rows_is_respected(tmp_path):
    df = _frame(tmp_path, [_trial(0, metrics={"a": 1.0, "b": 1.0}),
                           _trial(1, metrics={"a": 2.0}),
                           _trial(2, metrics={"a": 0.5, "b": 3.0})], {"a": "max", "b": "max"})
    info = data.pareto_info(df, "a", "b", {"a": "max", "b": "max"})
    assert list(info.points["number"]) == [0, 2]  # trial 1 lacks b
    assert list(info.points["on_front"]) == list(
        pareto_mask(np.array([[1.0, 1.0], [0.5, 3.0]]), ["max", "max"]))


@pytest.mark.parametrize("directions", [("max", "min"), ("min", "min"), ("max", "max"),
                                        ("min", "max")])
def test_front_mask_equals_pareto_mask(directions):
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(size=(3000, 2)), 1)  # many ties and duplicates
    values[rng.integers(0, 3000, 40), 1] = np.nan
    assert np.array_equal(data.front_mask(values, directions), pareto_mask(values, directions))
