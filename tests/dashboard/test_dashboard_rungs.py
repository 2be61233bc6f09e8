"""The Experiment and Trial pages on a multi-fidelity and a constrained store made by real
runs, through AppTest: budget on the best-so-far axis, rungs coloured by budget,
promotions, infeasible trials."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

import fidelitytoys
from fidelitytoys import CostedToy
import memnas
import toyspace
from memnas.dashboard import ENV_VAR, app_path
from memnas.dashboard.data import best_so_far


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash_rungs')}/d.db"
    fidelitytoys.experiment(url, "mf").run(max_trials=40, executor="local")
    memnas.Experiment(name="cons", space=toyspace.point_space(), evaluator=CostedToy(),
                      algorithm="random", seed=1, store=url,
                      objectives={"accuracy": "max", "params": "min"},
                      constraints={"params": ("<=", 25), "accuracy": ("<=", 1.05)}
                      ).run(max_trials=20, executor="local")
    return url


def _page(monkeypatch, url: str, page: str, **params: str) -> AppTest:
    monkeypatch.setenv(ENV_VAR, url)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.run()
    for k, v in params.items():
        at.query_params[k] = v
    at = at.switch_page(page).run()
    assert not at.exception
    return at


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _links(at: AppTest) -> list[str]:
    return [e.proto.label for e in at.get("page_link")]


def test_best_so_far_of_a_multi_fidelity_run_is_over_the_budget_spent(monkeypatch, url):
    at = _page(monkeypatch, url, "views/experiment.py", experiment="mf", show="best")
    radio = at.radio(key="memnas_over_1")
    assert radio.options[0] == "budget spent" and radio.value == "budget spent"
    spec = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Best"))
    assert spec["layout"]["xaxis"]["title"]["text"] == "steps spent (all trials)"
    names = [t["name"] for t in spec["data"]]
    assert names == ["steps = 1", "steps = 3", "steps = 9", "best so far"]
    colors = [t["marker"]["color"] for t in spec["data"][:3]]
    assert len(set(colors)) == 3
    df = memnas.load("mf", url).trials()
    series = best_so_far(df, "accuracy", "max")
    assert series["spent"].is_monotonic_increasing
    assert series["spent"].iloc[-1] == df["budget_spent"].sum()
    radio.set_value("trial number").run()
    spec = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Best"))
    assert spec["layout"]["xaxis"]["title"]["text"] == "trial number"
    table = at.dataframe(key="memnas_trials_table").value
    assert list(table.columns[:4]) == ["number", "status", "budget", "parent"]


def test_a_run_without_budgets_keeps_its_axes_and_table(monkeypatch, url):
    at = _page(monkeypatch, url, "views/experiment.py", experiment="cons", show="best")
    assert at.radio(key="memnas_over_2").options == ["trial number", "time"]
    spec = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Best"))
    assert [t["name"] for t in spec["data"]] == ["trials", "best so far"]
    table = at.dataframe(key="memnas_trials_table").value
    assert "budget" not in table.columns and "parent" not in table.columns
    labels = [m.label for m in at.metric]
    infeasible = (memnas.load("cons", url).trials()["status"] == "infeasible").sum()
    assert at.metric[labels.index("infeasible")].value == str(infeasible)
    best = memnas.load("cons", url).best()["accuracy"]
    assert at.metric[labels.index("best accuracy (max)")].value == f"{best:.4g}"


def test_trial_page_shows_the_budget_and_links_the_promotions(monkeypatch, url):
    df = memnas.load("mf", url).trials()
    middle = df[(df["budget"] == 3.0) & df["parent"].notna()]
    row = next(r for _, r in middle.iterrows() if (df["parent"] == r["number"]).any())
    child = int(df.loc[df["parent"] == row["number"], "number"].iloc[0])
    at = _page(monkeypatch, url, "views/trial.py", experiment="mf", trial=str(row["number"]))
    assert "budget **3**" in _texts(at.caption)
    links = _links(at)
    assert f"continues trial #{int(row['parent'])} (budget 1)" in links
    assert f"continued by trial #{child} (budget 9)" in links


def test_trial_page_of_an_infeasible_trial_gives_its_reason(monkeypatch, url):
    df = memnas.load("cons", url).trials()
    bad = df[df["status"] == "infeasible"].iloc[0]
    at = _page(monkeypatch, url, "views/trial.py", experiment="cons", trial=str(bad["number"]))
    text = _texts(at.warning)
    assert "**Infeasible**, never trained: breaks the constraints by" in text
    assert "Error" not in [h.value for h in at.subheader]
    broke = df[df["constraint_violation"].fillna(0) > 0].iloc[0]
    at = _page(monkeypatch, url, "views/trial.py", experiment="cons",
               trial=str(broke["number"]))
    assert "Broke the experiment's constraints after training" in _texts(at.warning)
