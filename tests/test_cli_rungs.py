"""`memnas show` of a multi-fidelity and of a constrained experiment (real runs)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import fidelitytoys
from fidelitytoys import CostedToy
import memnas
import toyspace
from memnas.cli import main


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('show_rungs')}/s.db"
    fidelitytoys.experiment(url, "mf").run(max_trials=40, executor="local")
    memnas.Experiment(name="cons", space=toyspace.point_space(), evaluator=CostedToy(),
                      algorithm="random", seed=1, store=url,
                      objectives={"accuracy": "max", "params": "min"},
                      constraints={"params": ("<=", 25), "accuracy": ("<=", 1.05)}
                      ).run(max_trials=20, executor="local")
    return url


def _show(url: str, name: str) -> str:
    out = CliRunner().invoke(main, ["show", name, "--store", url])
    assert out.exit_code == 0, out.output
    return out.output


def test_show_lists_the_rungs_and_the_budget_spent(url):
    text = _show(url, "mf")
    rungs = memnas.load("mf", url).rungs()
    per = ", ".join(f"{n} at {int(b)}" for b, n in rungs["trials"].items())
    assert f"  rungs (steps): {per}; {int(rungs['spent'])} steps spent in all\n" in text
    assert "constraints broken" not in text


def test_show_counts_infeasible_trials_and_never_ranks_a_broken_one(url):
    text = _show(url, "cons")
    df = memnas.load("cons", url).trials()
    infeasible = int((df["status"] == "infeasible").sum())
    broke = df[df["constraint_violation"].fillna(0) > 0]
    assert f"{infeasible} infeasible" in text.splitlines()[1]  # the counts line
    assert (f"  constraints broken (never best, not on the front): {infeasible} infeasible "
            f"(before training), {len(broke)} after training") in text
    assert "rungs" not in text
    ranked = [ln for ln in text.splitlines() if ln.startswith(("  best ", "    #"))]
    assert ranked
    for n in broke["number"]:  # the most accurate trial broke accuracy <= 1.05
        assert not any(f"trial {n}:" in ln or ln.startswith(f"    #{n} ") for ln in ranked)
