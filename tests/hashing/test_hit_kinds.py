"""Hits by kind: duplicate, canonical and functional matches stored, shown and counted."""

import pytest

import memnas
from kindtoys import SEQUENCE, SPACE, Replay, gain_score
from memnas.hashing import match_kind
from memnas.store import Store, cachekinds

KINDS = {1: ("attached", "duplicate"), 2: ("attached", "canonical"),
         3: ("attached", "duplicate"), 4: ("attached", "functional"), 6: ("hit", "functional"),
         7: ("hit", "canonical"), 8: ("hit", "functional"), 9: ("hit", "duplicate"),
         10: ("hit", "duplicate")}
LINE = ("equivalence cache: 2 evaluated, 5 hits (2 duplicate, 1 canonical, 2 functional), "
        "4 attached (2 duplicate, 1 canonical, 1 functional)")


def _run(url):
    exp = memnas.Experiment(name="kinds", space=SPACE, evaluator=gain_score,
                            algorithm=Replay(picks=SEQUENCE), objectives={"accuracy": "max"},
                            store=url)
    return exp.run(max_trials=len(SEQUENCE), workers=2, executor="local")


def _show(url):
    from click.testing import CliRunner

    from memnas.cli import main

    out = CliRunner().invoke(main, ["show", "kinds", "--store", url])
    assert out.exit_code == 0, out.output
    return out.output


def test_match_kind():
    assert match_kind('{"a":1}', "s", '{"a":1}', "s") == "duplicate"
    assert match_kind('{"a":1}', "s", '{"a":1,"b":2}', "s") == "canonical"
    assert match_kind('{"a":1}', "s", '{"a":2}', "t") == "functional"


def test_each_hit_is_stored_and_shown_with_its_kind(store_url):
    result = _run(store_url)
    df = result.trials().set_index("number")
    assert list(df.index[df["status"] == "completed"]) == [0, 5]
    assert set(df.index[df["status"] == "cached"]) == set(KINDS)
    stored = dict(zip(df["id"], df["cache_kind"]))
    assert [stored[df.loc[n, "id"]] for n in sorted(KINDS)] == [
        "attached" if how == "attached" else kind for how, kind in KINDS.values()]
    store = Store(store_url, read_only=True)
    exp_id = store.experiment("kinds")["id"]
    kinds = cachekinds.cache_kinds(store, exp_id)
    assert {int(df.index[df["id"] == i][0]): hk[1:] for i, hk in kinds.items()} == KINDS
    assert cachekinds.cache_kind_counts(store, exp_id) == {
        "hit": {"duplicate": 2, "canonical": 1, "functional": 2},
        "attached": {"duplicate": 2, "canonical": 1, "functional": 1}}
    assert df.loc[6, "cached_from"] == df.loc[5, "id"]
    assert {df.loc[n, "cached_from"] for n in (1, 2, 3, 4, 7, 8, 9, 10)} == {df.loc[0, "id"]}
    assert LINE in _show(store_url)


def _old_store(url):
    """The run's store as an older memnas wrote it: hits stored as ``hit``, kind unknown."""
    _run(url)
    store = Store(url)
    for t in store.trials(store.experiment("kinds")["id"]):
        if t["cache_kind"] not in (None, "attached"):
            store.update_trial(t["id"], cache_kind="hit")


def test_hits_of_an_older_store_are_of_unknown_kind(sqlite_url):
    _old_store(sqlite_url)
    assert ("5 hits (5 of unknown kind), 4 attached (2 duplicate, 1 canonical, 1 functional)"
            in _show(sqlite_url))


@pytest.mark.parametrize("old", [False, True])
def test_dashboard_counts_and_lists_the_kinds(sqlite_url, monkeypatch, old):
    from streamlit.testing.v1 import AppTest

    from memnas.dashboard import app_path

    _old_store(sqlite_url) if old else _run(sqlite_url)
    monkeypatch.setenv("MEMNAS_STORE", sqlite_url)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.query_params["experiment"] = "kinds"
    at.switch_page("views/experiment.py").run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("Equivalence cache: 2 evaluated, 5 hits, 4 attached" in c for c in captions)
    want = ("Cached trials by kind: 2 duplicate (the same candidate), 1 canonical (the same "
            "canonical form), 1 functional (the same functional hash only), 5 unknown" if old
            else "Cached trials by kind: 4 duplicate (the same candidate), 2 canonical (the "
            "same canonical form), 3 functional (the same functional hash only)")
    assert any(c.startswith(want) for c in captions), captions
    table = at.dataframe[0].value.set_index("number")
    cells = table["cache"].to_dict()
    assert cells[0] == cells[5] == ""
    assert cells[1] == cells[3] == "duplicate (attached)" and cells[4] == "functional (attached)"
    assert [cells[n] for n in (6, 7, 9)] == (["hit (kind unknown)"] * 3 if old else
                                              ["functional", "canonical", "duplicate"])


@pytest.mark.parametrize("number, text", [
    (7, "Result reused by the equivalence cache (canonical: the same canonical form"),
    (2, "Result reused by the equivalence cache (attached to a running twin, canonical: the "
        "same canonical form"),
    (6, "Result reused by the equivalence cache (functional: the same functional hash only")])
def test_trial_page_says_what_the_reused_trial_shares(sqlite_url, monkeypatch, number, text):
    from streamlit.testing.v1 import AppTest

    from memnas.dashboard import app_path

    _run(sqlite_url)
    monkeypatch.setenv("MEMNAS_STORE", sqlite_url)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.query_params["experiment"] = "kinds"
    at.query_params["trial"] = str(number)
    at.switch_page("views/trial.py").run()
    assert not at.exception
    assert any(i.value.startswith(text) for i in at.info), [i.value for i in at.info]
