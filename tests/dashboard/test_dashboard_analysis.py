"""Derived data and the architecture diagram, on real store rows and real candidate JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyglove as pg
import pytest

from memnas.bench.synthetic import fill
from memnas.dashboard import analysis, architecture, data
from memnas.pareto import hypervolume_2d
from memnas.searchspace import memory_space
from memnas.records import WITH_RESULT
from memnas.store import Store, reader

OBJ = {"accuracy": "max", "params": "min"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(store, experiment id, trials frame) of 2000 bulk-inserted synthetic trials."""
    url = f"sqlite:///{tmp_path_factory.mktemp('analysis')}/s.db"
    exp_id = fill(url, 2000, name="s")
    store = Store(url, read_only=True)
    yield store, exp_id, reader.trials_frame(store, exp_id, OBJ)
    store.close()


def test_sql_frame_matches_the_store_rows(synthetic):
    store, exp_id, df = synthetic
    store_rows = {t["number"]: t for t in store.trials(exp_id)}
    assert len(df) == len(store_rows) == 2000
    assert list(df.columns[:5]) == ["number", "status", "summary", "accuracy", "params"]
    assert df.attrs["costs"] == ["latency_ms", "params"]
    assert df.attrs["values"] == ["accuracy", "params", "loss", "latency_ms"]
    for _, row in df.sample(50, random_state=0).iterrows():
        t = store_rows[row["number"]]
        assert row["status"] == t["status"] and row["summary"] == t["summary"]
        if t["status"] == "failed":
            assert np.isnan(row["accuracy"])
            assert row["error"] == t["error"].strip().splitlines()[-1]
        else:
            assert row["accuracy"] == pytest.approx(t["metrics"]["accuracy"])
            assert row["params"] == pytest.approx(t["costs"]["params"])
        assert row["finished_at"] == pd.Timestamp(t["finished_at"])
    assert set(df["status"]) == {"completed", "cached", "failed"}


def test_stamp_changes_when_a_trial_does(tmp_path):
    url = f"sqlite:///{tmp_path}/st.db"
    exp_id = fill(url, 20, name="s")
    store = Store(url)
    before = reader.stamp(store, exp_id)
    tid, _ = store.add_trial(exp_id, status="running", dna=[], decisions={}, candidate="{}",
                             sym_hash="x" * 64)
    assert reader.stamp(store, exp_id) != before
    store.close()


def test_decisions_are_read_as_labels(synthetic):
    store, exp_id, df = synthetic
    keys = reader.decision_keys(store, exp_id)
    assert set(keys[:4]) == {"d_model", "layers", "layers[0].mixer", "layers[0].mlp_ratio"} \
        or set(keys[:2]) == {"d_model", "layers"}
    dec = reader.decisions_frame(store, exp_id, ["d_model", "layers[0].mixer", "layers[2].mixer"])
    assert len(dec) == 2000 and set(dec["d_model"]) == {16, 32, 64}
    assert str(dec.loc[0, "d_model"]) == df.loc[0, "summary"].split(" ")[0].removeprefix("d=")
    assert dec["layers[2].mixer"].isna().any() and dec["layers[2].mixer"].notna().any()
    sample = reader.decisions_frame(store, exp_id, ["d_model"], every=10)
    assert len(sample) == 200 and (sample["number"] % 10 == 0).all()
    stats = analysis.decision_stats(dec, df, "layers[0].mixer", "accuracy")
    att = stats.set_index("choice").loc["attention"]
    rows = df.merge(dec, on="number")
    mine = rows[(rows["layers[0].mixer"] == "attention") & rows["accuracy"].notna()]
    assert att["n"] == len(mine) and att["median"] == pytest.approx(mine["accuracy"].median())


def test_hypervolume_over_time_ends_at_the_whole_front(synthetic):
    _, _, df = synthetic
    hv = analysis.hypervolume_over_time(df, "accuracy", "params", OBJ, checkpoints=50)
    assert len(hv) == 50 and (np.diff(hv["hypervolume"]) >= -1e-9).all()
    ref = analysis.reference_point(df, "accuracy", "params", OBJ)
    done = df[df["status"].isin(WITH_RESULT)].dropna(subset=["accuracy", "params"])
    whole = hypervolume_2d(done[["accuracy", "params"]].to_numpy(), ["max", "min"], ref)
    assert hv["hypervolume"].iloc[-1] == pytest.approx(whole)
    assert hv["number"].iloc[-1] == done["number"].max()


def test_pareto_sample_keeps_every_front_point(synthetic):
    _, _, df = synthetic
    full = data.pareto_info(df, "accuracy", "params", OBJ)
    small = data.pareto_info(df, "accuracy", "params", OBJ, max_points=300, color="loss")
    assert len(small.points) == 300 and small.points.attrs["total"] == len(full.points)
    assert list(small.front["number"]) == list(full.front["number"])
    assert small.points["color"].notna().all()
    from memnas.dashboard import plots

    assert plots.plot_pareto(full).data[0].type == "scattergl"  # thousands: WebGL
    fig = plots.plot_pareto(small, color="loss")
    assert fig.data[0].type == "scatter" and fig.data[0].marker.colorbar.title.text == "loss"
    assert list(fig.data[2].customdata) == list(small.front["number"])


def test_filter_and_page(synthetic):
    _, _, df = synthetic
    rows = analysis.filter_trials(df, ["failed"], "", "number", True)
    assert set(rows["status"]) == {"failed"} and rows["number"].is_monotonic_decreasing
    text = analysis.filter_trials(df, None, "ATTENTION", "accuracy")
    assert text["summary"].str.contains("attention").all()
    page = analysis.page_of(text, 10_000, 25)
    assert page.page == page.pages and 1 <= len(page.rows) <= 25
    assert page.total == len(text)
    with pytest.raises(ValueError, match="'nope'"):
        analysis.filter_trials(df, None, "", "nope")
    with pytest.raises(ValueError, match="page size"):
        analysis.page_of(df, 1, 0)


def test_diagram_of_a_memory_space_candidate():
    space = memory_space(vocab_size=16, max_len=8, max_layers=3, min_layers=3, d_model=(8,))
    cand = next(pg.random_sample(space, seed=3))
    dia = architecture.diagram(pg.to_json_str(cand))
    assert dia.kind == "sequence" and len(dia.boxes) == 5
    assert dia.boxes[0].title == "input: SequenceModel" and "d_model=8" in dia.boxes[0].lines
    mixer = type(cand.layers[1].mixer).__name__
    assert dia.boxes[2].title == "1: Block"
    assert any(line.startswith(f"mixer: {mixer}(") for line in dia.boxes[2].lines)
    assert dia.edges == ((0, 1), (1, 2), (2, 3), (3, 4))
    text = architecture.symbolic_form(pg.to_json_str(cand))
    assert text.startswith("SequenceModel(") and f"mixer = {mixer}(" in text


def test_diagram_of_a_user_space_is_a_tree():
    cand = {"_type": "my.module.Net", "width": 3,
            "parts": [{"_type": "my.module.Conv", "k": 3}, 7, {"_type": "my.module.Pool"}],
            "opts": {"lr": 0.1}}
    dia = architecture.diagram(json.dumps(cand))
    assert dia.kind == "tree"
    titles = [b.title for b in dia.boxes]
    assert titles == ["candidate: Net", "parts: list[3]", "[0]: Conv", "[2]: Pool", "opts"]
    assert dia.edges == ((0, 1), (1, 2), (1, 3), (0, 4))
    assert dia.depth == (0, 1, 2, 2, 1)
    assert "[1]=7" in dia.boxes[1].lines
    assert architecture.diagram('"just text"').boxes[0].lines == ("'just text'",)
    assert "Net(" in architecture.symbolic_form(cand)


def test_sql_reads_on_every_backend(store_url):
    exp_id = fill(store_url, 200, name="b")
    store = Store(store_url, read_only=True)
    try:
        df = reader.trials_frame(store, exp_id, OBJ)
        rows = {t["number"]: t for t in store.trials(exp_id)}
        done = [t for t in rows.values() if t["status"] in WITH_RESULT]
        assert len(df) == 200
        assert df["accuracy"].max() == pytest.approx(max(t["metrics"]["accuracy"] for t in done))
        failed = df[df["status"] == "failed"].iloc[0]
        assert failed["error"] == rows[failed["number"]]["error"].splitlines()[-1]
        assert df["finished_at"].iloc[5] == pd.Timestamp(rows[5]["finished_at"])
        best = reader.best_values(store, exp_id, OBJ)
        assert best["params"] == pytest.approx(min(t["costs"]["params"] for t in done))
        assert reader.number_range(store, exp_id) == (0, 199, 200)
        dec = reader.decisions_frame(store, exp_id, ["d_model"], every=7)
        assert list(dec["number"]) == list(range(0, 200, 7))
        assert reader.trial_row(store, trial_id=rows[3]["id"])["number"] == 3
        assert sum(n for _, n, _, _ in reader.stamp(store, exp_id)) == 200
        detail = reader.trials_frame(store, exp_id, OBJ, detail=True)
        assert detail["layers[0].mixer"].notna().all() and len(detail) == 200
        front = data.pareto_info(df, "accuracy", "params", OBJ).front
        assert not front["number"].duplicated().any()
    finally:
        store.close()
