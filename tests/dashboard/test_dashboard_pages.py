"""Experiment sections, the Trial and Compare pages, through AppTest on a real store."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

from dashboard_helpers import CACHED, FAILED, MEMORY, TWO
from memnas.dashboard import ENV_VAR, app_path
from memnas.store import Store


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv(ENV_VAR, url)
    return AppTest.from_file(app_path(), default_timeout=30)


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _values(v) -> list:
    """A Plotly array, decoded where it was sent as typed binary (``bdata``)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _titles(at: AppTest) -> list[str]:
    return [s["layout"]["title"]["text"] for s in _specs(at)]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _page(at: AppTest, page: str, **params: str) -> AppTest:
    at.run()
    for k, v in params.items():
        at.query_params[k] = v
    return at.switch_page(page).run()


def _exp_id(url: str, name: str) -> int:
    store = Store(url, read_only=True)
    try:
        return store.require_experiment(name)["id"]
    finally:
        store.close()


def test_experiment_page_sections(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO,
               show="all")
    assert not at.exception
    assert at.button_group(key="memnas_show").value == ["best", "hypervolume", "decisions"]
    titles = _titles(at)
    assert titles[0].startswith("Pareto front")
    assert {"Best accuracy so far (↑ max)", "Best params so far (↓ min)"} <= set(titles)
    assert "Hypervolume of accuracy vs params" in titles
    assert "accuracy by y" in titles or "accuracy by x" in titles
    assert not any(t.startswith("Decisions against") for t in titles)  # opt-in
    at.toggle(key=f"memnas_parcoords_{_exp_id(dashboard_store, TWO)}").set_value(True).run()
    assert any(t.startswith("Decisions against accuracy") for t in _titles(at))
    pareto = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Pareto"))
    kinds = {d["name"]: d["type"] for d in pareto["data"]}
    assert kinds["trials"] == "scatter" and kinds["Pareto front"] == "scatter"  # few: SVG
    front = next(d for d in pareto["data"] if d["name"] == "Pareto front")
    numbers = _values(front["customdata"])
    assert numbers and all(isinstance(n, int) for n in numbers)  # what a click selects
    assert "trial " in front["text"][0] and "accuracy = " in front["text"][0]
    assert {m.label for m in at.metric} >= {"cache hit rate", "failed", "cached"}
    hv = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Hypervolume"))
    ys = _values(hv["data"][0]["y"])
    assert ys == sorted(ys) and ys[-1] > 0  # never shrinks as trials are added
    assert "Reference point (accuracy, params) = (" in _texts(at.caption)


def test_pareto_front_shows_each_architecture_once(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=CACHED)
    assert not at.exception
    pareto = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Pareto"))
    front = next(d for d in pareto["data"] if d["name"] == "Pareto front")
    numbers = _values(front["customdata"])
    store = Store(dashboard_store, read_only=True)
    trials = store.trials(_exp_id(dashboard_store, CACHED))
    store.close()
    evaluated = sorted(t["number"] for t in trials if t["status"] == "completed")
    assert len(trials) == 6 and sorted(numbers) == evaluated  # 4 cached twins folded in
    assert any("cached twins: #" in text for text in front["text"])
    assert "4 cached twins drawn as the trial they reused" in _texts(at.caption)
    table = at.dataframe(key="memnas_trials_table").value
    assert len(table) == 6 and set(table["y"]) == {1, 2}  # a column per decision


def test_trials_table_has_a_readable_column_per_decision(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=MEMORY)
    assert not at.exception
    table = at.dataframe(key="memnas_trials_table").value
    columns = list(table.columns)
    assert columns.index("d_model") < columns.index("layers") < columns.index("layers[0].mixer")
    assert columns.index("layers[0].mixer") < columns.index("wall_time")
    assert not any("[=" in c for c in columns)
    assert table["layers[0].mixer"].str.match(r"^[A-Z]\w+$").all()  # class names


def test_pareto_colour_by_a_third_value(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO)
    exp_id = _exp_id(dashboard_store, TWO)
    at.selectbox(key=f"memnas_pareto_c_{exp_id}").select("loss").run()
    assert not at.exception
    pareto = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Pareto"))
    rest = next(d for d in pareto["data"] if d["name"] == "trials")
    assert rest["marker"]["colorbar"]["title"]["text"] == "loss"


@pytest.mark.parametrize("show,titles", [
    ("best", ["Best accuracy so far (↑ max)", "Best params so far (↓ min)"]),
    ("hypervolume", ["Hypervolume of accuracy vs params"]),
    ("decisions", ["accuracy by "]),
])
def test_each_analysis_is_one_click_away(monkeypatch, dashboard_store, show, titles):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO)
    first = _titles(at)
    assert len(first) == 1 and first[0].startswith("Pareto front")  # and nothing else yet
    at.button_group(key="memnas_show").select(show).run()
    assert not at.exception
    assert at.query_params["show"] == show  # the URL names what is shown
    drawn = _titles(at)[1:]
    assert len(drawn) == len(titles)
    assert all(t.startswith(want) for t, want in zip(drawn, titles)), drawn
    at.button_group(key="memnas_show").unselect(show).run()
    assert len(_titles(at)) == 1 and "show" not in at.query_params


def test_the_chosen_analyses_stay_chosen_across_pages(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO)
    at.button_group(key="memnas_show").set_value(["hypervolume", "best"]).run()
    at.query_params["trial"] = "1"
    at.switch_page("views/trial.py").run()
    at.query_params.pop("show", None)
    at.switch_page("views/experiment.py").run()
    assert not at.exception
    assert set(at.button_group(key="memnas_show").value) == {"best", "hypervolume"}
    assert len(_titles(at)) == 4  # Pareto, two best-so-far curves, hypervolume


def test_best_so_far_over_time(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO,
               show="best")
    exp_id = _exp_id(dashboard_store, TWO)
    at.radio(key=f"memnas_over_{exp_id}").set_value("time").run()
    assert not at.exception
    best = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Best acc"))
    assert best["layout"]["xaxis"]["title"]["text"] == "finish time (UTC)"
    assert str(best["data"][0]["x"][0]).startswith("20")  # timestamps


def test_trials_table_filters_and_pages(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO)
    exp_id = _exp_id(dashboard_store, TWO)
    table = at.dataframe(key="memnas_trials_table").value
    assert len(table) == 12
    at.multiselect(key=f"memnas_tr_status_{exp_id}").select("failed").run()
    failed = at.dataframe(key="memnas_trials_table").value
    assert len(failed) >= 1 and set(failed["status"]) == {"failed"}
    at.multiselect(key=f"memnas_tr_status_{exp_id}").unselect("failed").run()
    at.selectbox(key=f"memnas_tr_size_{exp_id}").select(25).run()
    at.selectbox(key=f"memnas_tr_sort_{exp_id}").select("accuracy").run()
    at.toggle(key=f"memnas_tr_desc_{exp_id}").set_value(True).run()
    assert not at.exception
    ordered = at.dataframe(key="memnas_trials_table").value["accuracy"].dropna().tolist()
    assert ordered == sorted(ordered, reverse=True)


def test_trials_table_paging(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/experiment.py", experiment=TWO)
    exp_id = _exp_id(dashboard_store, TWO)
    at.selectbox(key=f"memnas_tr_size_{exp_id}").set_value(25).run()
    assert len(at.dataframe(key="memnas_trials_table").value) == 12
    at.number_input(key=f"memnas_tr_page_{exp_id}").set_value(1).run()
    assert "page 1 of 1" in _texts(at.caption)


def test_trial_page_of_a_failed_trial_shows_the_traceback(monkeypatch, dashboard_store):
    store = Store(dashboard_store, read_only=True)
    number = store.trials(_exp_id(dashboard_store, FAILED))[0]["number"]
    at = _page(_app(monkeypatch, dashboard_store), "views/trial.py", experiment=FAILED,
               trial=str(number))
    assert not at.exception
    assert at.title[0].value == f"{FAILED} · trial {number}"
    assert "RuntimeError: the evaluator is broken" in _texts(at.code)
    assert "Traceback" in _texts(at.code)


def test_trial_page_draws_the_architecture(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/trial.py", experiment=MEMORY,
               trial="0")
    assert not at.exception
    arch = next(s for s in _specs(at) if s["layout"]["title"]["text"] == "Architecture")
    boxes = [a["text"] for a in arch["layout"]["annotations"] if a.get("text")]
    assert boxes[0].startswith("<b>input: SequenceModel</b>")
    assert any(b.startswith("<b>0: Block</b>") and "mixer: " in b for b in boxes)
    assert boxes[-1].startswith("<b>output</b>")
    assert "SequenceModel(" in _texts(at.code)
    assert "trial 0 curve" not in _titles(at)  # this evaluator reports no curve
    assert "reported no curve" in _texts(at.info)


def test_trial_page_number_box_and_curve(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/trial.py", experiment=TWO, trial="0")
    store = Store(dashboard_store, read_only=True)
    done = [t["number"] for t in store.trials(_exp_id(dashboard_store, TWO))
            if t["status"] == "completed"]
    at.sidebar.number_input[0].set_value(done[1]).run()
    assert not at.exception
    assert at.title[0].value == f"{TWO} · trial {done[1]}"
    assert at.query_params["trial"] == str(done[1])
    assert f"trial {done[1]} curve" in _titles(at)
    arch = next(s for s in _specs(at) if s["layout"]["title"]["text"] == "Architecture")
    assert any("candidate" in a["text"] for a in arch["layout"]["annotations"])  # a tree


def test_trial_page_links_a_cached_trial_to_its_source(monkeypatch, dashboard_store):
    store = Store(dashboard_store, read_only=True)
    trials = store.trials(_exp_id(dashboard_store, CACHED))
    cached = next(t for t in trials if t["status"] == "cached")
    source = next(t for t in trials if t["id"] == cached["cached_from"])
    at = _page(_app(monkeypatch, dashboard_store), "views/trial.py", experiment=CACHED,
               trial=str(cached["number"]))
    assert not at.exception
    assert f"from trial {source['number']} of '{CACHED}'" in _texts(at.info)


def test_trial_page_unknown_number_is_clamped_and_bad_text_refused(monkeypatch,
                                                                   dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/trial.py", experiment=TWO,
               trial="nope")
    assert not at.exception
    assert "trial must be a trial number, got 'nope'" in _texts(at.error)


def test_compare_page_overlays_experiments(monkeypatch, dashboard_store):
    at = _page(_app(monkeypatch, dashboard_store), "views/compare.py")
    assert not at.exception
    at.multiselect(key="memnas_compare").set_value([TWO, CACHED, MEMORY]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["experiment"]) == [TWO, CACHED, MEMORY]
    specs = {s["layout"]["title"]["text"]: s for s in _specs(at)}
    best = specs["Best accuracy so far (↑ max)"]
    assert [d["name"] for d in best["data"]] == [TWO, CACHED, MEMORY]
    fronts = specs["Pareto fronts: accuracy (↑ max) vs params (↓ min)"]
    assert [d["name"] for d in fronts["data"]] == [TWO, CACHED, MEMORY]


def test_experiments_page_filter_and_sort(monkeypatch, dashboard_store):
    at = _app(monkeypatch, dashboard_store).run()
    at.text_input(key="memnas_exps_filter").input("obj").run()
    assert not at.exception
    names = set(at.dataframe[0].value["name"])
    assert names == {TWO, "single-objective"}
    at.text_input(key="memnas_exps_filter").input("").run()
    at.selectbox(key="memnas_exps_sort").select("failed").run()
    failed = at.dataframe[0].value["failed"].tolist()
    assert failed == sorted(failed, reverse=True)
    at.text_input(key="memnas_exps_filter").input("zzz").run()
    assert "No experiment matches" in _texts(at.info)


def test_live_mode_on_every_page(monkeypatch, dashboard_store):
    at = _app(monkeypatch, dashboard_store).run()
    at.sidebar.toggle[0].set_value(True).run()
    for page, params in [("views/experiment.py", {"experiment": TWO}),
                         ("views/trial.py", {"experiment": TWO, "trial": "1"}),
                         ("views/compare.py", {})]:
        for k, v in params.items():
            at.query_params[k] = v
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.get("plotly_chart"), page


def test_a_running_search_shows_up_without_reloading(monkeypatch, tmp_path):
    import time

    from memnas.bench.synthetic import fill
    from memnas.dashboard import _ui
    from memnas.store import utcnow

    url = f"sqlite:///{tmp_path}/live.db"
    exp_id = fill(url, 30, name="live")
    at = _page(_app(monkeypatch, url), "views/experiment.py", experiment="live")
    at.sidebar.toggle[0].set_value(True).run()
    assert {m.label: m.value for m in at.metric}["trials"] == "30"
    before = len(at.dataframe(key="memnas_trials_table").value)
    store = Store(url)
    for i in range(3):  # the driver writes three more trials meanwhile
        tid, _ = store.add_trial(exp_id, status="running", dna=[], decisions={"d_model": "0/3 (16)"},
                                 candidate="{}", sym_hash=f"{i:064x}", summary="new one")
        store.update_trial(tid, status="completed", metrics={"accuracy": 0.5, "loss": 1.0},
                           costs={"params": 1.0, "latency_ms": 0.1}, started_at=utcnow(),
                           finished_at=utcnow(), wall_time=0.1)
    store.close()
    time.sleep(_ui.READ_TTL_S + 0.5)  # the cached reads expire; the trials stamp changed
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["trials"] == "33"
    assert {m.label: m.value for m in at.metric}["best params (min)"] == "1"  # the new front
    assert before == 30 and at.caption and "33 of 33 trials match" in _texts(at.caption)


def test_trial_page_lists_stored_artifacts(monkeypatch, tmp_path):
    from memnas.bench.synthetic import fill

    url = f"sqlite:///{tmp_path}/art.db"
    exp_id = fill(url, 5, name="art")
    store = Store(url)
    trial = store.trials(exp_id)[2]
    store.save_artifact(trial["id"], "output", {"mask": np.ones((3, 4), dtype="float32"),
                                                "note": "pruned"})
    store.close()
    at = _page(_app(monkeypatch, url), "views/trial.py", experiment="art", trial="2")
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["kind"]) == ["output"]
    assert "mask" in table["keys"].iloc[0] and int(table["size"].iloc[0]) > 0
    at = _page(_app(monkeypatch, url), "views/trial.py", experiment="art", trial="1")
    assert "This trial stored no artifacts." in _texts(at.caption)


def test_trial_page_charts_a_supernet_s_alphas_apart_from_its_curve(monkeypatch, tmp_path):
    from memnas.bench.synthetic import fill

    url = f"sqlite:///{tmp_path}/alphas.db"
    exp_id = fill(url, 3, name="darts")
    store = Store(url)
    trial = store.trials(exp_id)[1]
    store.clear_curve(trial["id"])
    points = [{"step": e, "name": "loss", "value": 1.0 / (e + 1)} for e in range(3)]
    for e in range(3):
        w = 0.5 + 0.1 * e
        points += [{"step": e, "name": "alpha/layers[=1/2][0].mixer/0", "value": w},
                   {"step": e, "name": "alpha/layers[=1/2][0].mixer/1", "value": 1 - w},
                   {"step": e, "name": "alpha/act/0", "value": 0.5}]
    store.update_trial(trial["id"], curve=points)
    store.close()
    at = _page(_app(monkeypatch, url), "views/trial.py", experiment="darts", trial="1")
    assert not at.exception
    titles = _titles(at)
    assert "trial 1 curve" in titles
    assert "alphas of layers[=1/2][0].mixer" in titles and "alphas of act" in titles
    spec = _specs(at)[titles.index("alphas of layers[=1/2][0].mixer")]
    assert sorted(t["name"] for t in spec["data"]) == ["0", "1"]
    curve = _specs(at)[titles.index("trial 1 curve")]
    assert [t["name"] for t in curve["data"]] == ["loss"]
