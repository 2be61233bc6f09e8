"""The Streamlit app, page by page, through AppTest on a real store."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboard_helpers import CACHED, FAILED, MEMORY, SINGLE, TWO
from memnas.dashboard import ENV_VAR, app_path

EXPERIMENT_PAGE = "views/experiment.py"


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv(ENV_VAR, url)
    return AppTest.from_file(app_path(), default_timeout=30)


def _chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _open(at: AppTest, name: str) -> AppTest:
    at.run()
    at.query_params["experiment"] = name
    return at.switch_page(EXPERIMENT_PAGE).run()


def test_experiments_page_lists_experiments(monkeypatch, dashboard_store):
    at = _app(monkeypatch, dashboard_store).run()
    assert not at.exception
    assert at.title[0].value == "Experiments"
    table = at.dataframe[0].value.set_index("name")
    assert set(table.index) == {TWO, SINGLE, FAILED, MEMORY, CACHED}
    assert 0.5 < table.loc[TWO, "best accuracy"] <= 1.0
    assert table.loc[TWO, "best params"] in (10.0, 20.0, 30.0)
    assert table.loc[TWO, "running time (s)"] >= 0
    assert table.loc[FAILED, "failed"] == 2
    assert table.loc[CACHED, "cached"] == 4
    assert at.sidebar.selectbox[0].options == [CACHED, MEMORY, FAILED, SINGLE, TWO]  # newest first


def test_two_objective_experiment_page(monkeypatch, dashboard_store):
    at = _open(_app(monkeypatch, dashboard_store), TWO)
    assert not at.exception
    assert at.title[0].value == TWO
    assert at.query_params["experiment"] == TWO
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["trials"] == "12" and int(metrics["failed"]) >= 1
    # The first view: one chart (the Pareto front) and the trials table.
    assert _chart_titles(at) == ["Pareto front: accuracy (↑ max) vs params (↓ min)"]
    exp_id = _exp_id(at, TWO)
    assert at.selectbox(key=f"memnas_pareto_x_{exp_id}").value == "accuracy"
    assert at.selectbox(key=f"memnas_pareto_y_{exp_id}").value == "params"
    trials = at.dataframe[0].value
    assert len(trials) == 12
    assert "ValueError: cannot evaluate y=3" in "\n".join(trials["error"])
    at.button_group(key="memnas_show").set_value(["best"]).run()
    assert not at.exception
    assert _chart_titles(at) == ["Pareto front: accuracy (↑ max) vs params (↓ min)",
                                 "Best accuracy so far (↑ max)", "Best params so far (↓ min)"]
    assert at.query_params["show"] == "best"


def _exp_id(at: AppTest, name: str) -> int:
    keys = [w.key for w in at.selectbox if w.key and w.key.startswith("memnas_pareto_x_")]
    assert len(keys) == 1, keys
    return int(keys[0].rsplit("_", 1)[1])


def test_pareto_axes_can_be_changed(monkeypatch, dashboard_store):
    at = _open(_app(monkeypatch, dashboard_store), TWO)
    exp_id = _exp_id(at, TWO)
    at.selectbox(key=f"memnas_pareto_x_{exp_id}").select("loss").run()
    assert not at.exception
    assert "Pareto front: loss (↑ max) vs params (↓ min)" in _chart_titles(at)
    at.selectbox(key=f"memnas_pareto_y_{exp_id}").select("loss").run()
    assert "different values" in _texts(at.warning)


def test_single_objective_experiment_has_no_pareto_chart(monkeypatch, dashboard_store):
    at = _open(_app(monkeypatch, dashboard_store), SINGLE)
    assert not at.exception
    titles = _chart_titles(at)
    assert titles[0] == "Best loss so far (↓ min)"  # shown at once without a Pareto front
    assert not [t for t in titles if t.startswith("Pareto")]
    assert "Single-objective experiment" in _texts(at.info)


def test_experiment_without_completed_trials(monkeypatch, dashboard_store):
    at = _open(_app(monkeypatch, dashboard_store), FAILED)
    assert not at.exception
    assert _chart_titles(at) == []
    assert "No completed trials yet" in _texts(at.info)
    assert list(at.dataframe[0].value["status"]) == ["failed", "failed"]


def test_sidebar_selection_opens_the_experiment(monkeypatch, dashboard_store):
    at = _app(monkeypatch, dashboard_store).run()
    at.sidebar.selectbox[0].select(SINGLE).run()
    assert not at.exception
    assert at.title[0].value == SINGLE
    assert at.query_params["experiment"] == SINGLE
    at.sidebar.selectbox[0].select(TWO).run()  # and from the experiment page itself
    assert at.title[0].value == TWO and at.query_params["experiment"] == TWO


def test_unknown_experiment_in_url(monkeypatch, dashboard_store):
    at = _open(_app(monkeypatch, dashboard_store), "nope")
    assert not at.exception
    assert "no experiment named 'nope'" in _texts(at.error)


@pytest.mark.parametrize("page", [None, EXPERIMENT_PAGE])
def test_empty_store(monkeypatch, empty_store, page):
    at = _app(monkeypatch, empty_store).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    assert "No experiments in this store yet" in _texts(at.info)
    assert not at.sidebar.selectbox


@pytest.mark.parametrize("url,message", [
    ("sqlite:////no/such/folder/x.db", "folder '/no/such/folder' does not exist"),
    ("mysqlx://nowhere/x", "cannot open store 'mysqlx://nowhere/x'"),
])
def test_bad_store_url(monkeypatch, url, message):
    at = _app(monkeypatch, url).run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value
    assert "\n" not in at.error[0].value
    assert not at.dataframe


def test_file_that_is_not_a_store(monkeypatch, tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    at = _app(monkeypatch, f"sqlite:///{path}").run()
    assert not at.exception
    assert len(at.error) == 1 and "cannot open store" in at.error[0].value


def test_live_update_and_refresh(monkeypatch, tmp_path):
    from memnas.bench.synthetic import fill
    from memnas.store import Store, utcnow

    url = f"sqlite:///{tmp_path}/live.db"
    exp_id = fill(url, 20, name="live")
    at = _open(_app(monkeypatch, url), "live")
    at.button_group(key="memnas_show").set_value(["best", "hypervolume"]).run()
    at.sidebar.toggle[0].set_value(True).run()
    assert not at.exception
    assert len(_chart_titles(at)) >= 3
    assert {m.label: m.value for m in at.metric}["trials"] == "20"
    store = Store(url)  # the driver stores a trial while the page is live
    tid, number = store.add_trial(exp_id, status="running", dna=[], candidate="{}",
                                  decisions={"d_model": 16, "layers": 1}, sym_hash="f" * 64,
                                  summary="stored while live")
    store.update_trial(tid, status="completed", metrics={"accuracy": 0.5, "loss": 1.0},
                       costs={"params": 1.0, "latency_ms": 0.1}, started_at=utcnow(),
                       finished_at=utcnow(), wall_time=0.1)
    store.close()
    at.sidebar.button[0].click().run()  # "Refresh now": no wait for cached reads to expire
    assert not at.exception
    assert at.title[0].value == "live"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["trials"] == "21" and metrics["best params (min)"] == "1"
    table = at.dataframe(key="memnas_trials_table").value
    assert len(table) == 21 and "stored while live" in set(table["summary"])
    assert len(_chart_titles(at)) >= 3


def test_database_without_memnas_tables(monkeypatch, tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x INTEGER)")
    conn.commit()
    conn.close()
    at = _app(monkeypatch, f"sqlite:///{path}").run()
    assert not at.exception
    assert len(at.error) == 1 and "is not a memnas store" in at.error[0].value
