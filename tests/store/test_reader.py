"""The store's one trial reader: tables, readable decisions (old stores' too) and twins."""

from __future__ import annotations

import math

import numpy as np
import pyglove as pg
import pytest

import memnas
from memnas.searchspace import memory_space
from memnas.store import Store, reader
from memnas.store.decisions import label_from_text, readable_decisions

OBJ = {"accuracy": "max", "params": "min"}


def evaluate_model(c, ctx):
    """No training: values from the spec (deterministic, so repeats are cache hits)."""
    return memnas.Measurement(metrics={"accuracy": 1.0 / (1 + len(c.layers)) + c.d_model / 100},
                              costs={"params": float(c.d_model * len(c.layers))})


def evaluate_y(c, ctx):
    """accuracy = y / 3, params = 10 y."""
    return memnas.Measurement(metrics={"accuracy": c["y"] / 3}, costs={"params": 10.0 * c["y"]})


def _space():
    return memory_space(vocab_size=16, max_len=8, max_layers=2, d_model=(8, 16))


@pytest.fixture(scope="module")
def memory_store(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('reader')}/m.db"
    memnas.Experiment(name="mem", space=_space(), evaluator=evaluate_model, algorithm="random",
                      objectives=OBJ, store=url).run(max_trials=8, workers=1, executor="local")
    return url


def test_decisions_are_one_readable_column_each(memory_store):
    df = memnas.load("mem", memory_store).trials()
    decided = df.attrs["decisions"]
    assert decided[:3] == ["d_model", "layers", "layers[0].mixer"]
    assert not any("[=" in c for c in decided)  # no PyGlove branch marks
    assert set(df["d_model"]) <= {8, 16} and set(df["layers"]) <= {1, 2}
    mixers = {cls.__name__ for cls in memnas.searchspace.mixers.registered_mixers().values()}
    assert set(df["layers[0].mixer"]) <= mixers
    one = df[df["layers"] == 1]
    if len(one):  # a one-block candidate made no decision about a second block
        assert one["layers[1].mixer"].isna().all()
    if "layers[0].mixer.structure" in df:  # a mixer's own decisions only where it was chosen
        other = df["layers[0].mixer"] != "MirasMemory"
        assert df.loc[other, "layers[0].mixer.structure"].isna().all()
    means = df.groupby("layers[0].mixer")["accuracy"].mean()
    assert set(means.index) == set(df["layers[0].mixer"]) and len(means) >= 2
    assert df.loc[0, "decisions"]["layers[0].mixer"] == df.loc[0, "layers[0].mixer"]


def test_the_runner_stores_short_labels_by_readable_paths(memory_store, tmp_path):
    store = Store(memory_store, read_only=True)
    exp_id = store.require_experiment("mem")["id"]
    for t in store.trials(exp_id):
        got = t["decisions"]
        assert isinstance(got["layers"], int) and got["d_model"] in (8, 16)
        assert all(isinstance(v, (int, float, str, bool)) and len(str(v)) <= 40
                   for v in got.values()), got
        assert all(k.startswith("layers[") and "[=" not in k for k in got
                   if k not in ("d_model", "layers"))
    store.close()
    url = f"sqlite:///{tmp_path}/named.db"
    space = pg.Dict(k=pg.oneof(["u", "v"], name="kind"), w=pg.oneof([None, 8]),
                    q=pg.oneof([pg.oneof([1, 2]), 3]), y=pg.oneof([1, 2]))
    memnas.Experiment(name="e", space=space, evaluator=evaluate_y, algorithm="random",
                      objectives=OBJ, store=url, cache=False).run(
        max_trials=12, workers=1, executor="local")
    df = memnas.load("e", url).trials()
    # A named decision keeps its name; None is a label, unlike an inactive branch; a choice
    # directly inside a choice keeps PyGlove's id, so the two never overwrite each other.
    assert df.attrs["decisions"] == ["kind", "w", "q", "q[=0/2]", "y"]
    assert set(df["kind"]) <= {"u", "v"} and set(df["w"]) <= {"None", 8}
    assert set(df["q"]) <= {"OneOf", 3}
    assert (df["q[=0/2]"].isna() == (df["q"] == 3)).all()


def test_old_style_decisions_still_read():
    old = {"d_model": "0/2 (8)",
           "layers": "1/2 ([0: Block(mixer=OneOf(candidates=[0: DeltaNet(num_heads=OneOf(...)",
           "layers[=1/2][0].mixer": "3/7 (MirasMemory(structure=OneOf(candidates=[0: 'vector'...)",
           "layers[=1/2][0].mixer[=3/7].structure": "0/3 ('vector')",
           "layers[=1/2][1].mlp_ratio": "2/3 (4)", "x": 0.25, "kind": "1/2 (None)"}
    assert readable_decisions(old) == {
        "d_model": 8, "layers": "1/2", "layers[0].mixer": "MirasMemory",
        "layers[0].mixer.structure": "vector", "layers[1].mlp_ratio": 4, "x": 0.25,
        "kind": "None"}
    new = {"layers[0].mixer": "MirasMemory", "note": "1/2 (x)"}  # a literal that looks old
    assert readable_decisions({"layers[0].mixer": "MirasMemory"}) == {
        "layers[0].mixer": "MirasMemory"}
    assert readable_decisions(new)["layers[0].mixer"] == "MirasMemory"
    assert label_from_text("[0: Block(a=1), 1: Block(b=[0: 1, 1: 2])]") == 2
    assert label_from_text("memnas.searchspace.model.Block(x=1)") == "Block"
    assert label_from_text("x" * 80) is None


def test_old_rows_display_beside_new_ones(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    memnas.Experiment(name="e", space=pg.Dict(y=pg.oneof([1, 2])), evaluator=evaluate_y,
                      algorithm="random", objectives=OBJ, store=url, cache=False).run(
        max_trials=2, workers=1, executor="local")
    store = Store(url)
    exp_id = store.require_experiment("e")["id"]
    tid, number = store.add_trial(exp_id, status="running", dna=[1], decisions={"y": "1/2 (2)"},
                                  candidate="{}", sym_hash="o" * 64, summary="an old row")
    store.update_trial(tid, status="completed", metrics={"accuracy": 0.5},
                       costs={"params": 20.0})
    df = reader.trials_frame(store, exp_id, OBJ, detail=True)
    assert list(df["y"])[-1] == 2 and df["y"].notna().all()
    assert reader.decision_keys(store, exp_id) == ["y"]
    assert reader.trial_row(store, exp_id, number)["decisions"] == {"y": 2}
    assert list(reader.decisions_frame(store, exp_id, ids=[tid])["y"]) == [2]
    store.close()


def test_a_decision_named_like_a_metric_is_prefixed(tmp_path):
    url = f"sqlite:///{tmp_path}/clash.db"
    space = pg.Dict(y=pg.oneof([1, 2]), params=pg.oneof(["a", "b"]))
    memnas.Experiment(name="e", space=space, evaluator=evaluate_y, algorithm="random",
                      objectives=OBJ, store=url).run(max_trials=3, workers=1, executor="local")
    df = memnas.load("e", url).trials()
    assert "decision:params" in df.columns and "y" in df.columns
    assert df["params"].dtype == float and set(df["decision:params"]) <= {"a", "b"}
    assert df.attrs["decisions"] == ["y", "decision:params"]


def test_a_front_with_a_cached_twin_lists_the_architecture_once(tmp_path):
    url = f"sqlite:///{tmp_path}/twins.db"
    result = memnas.Experiment(name="e", space=pg.Dict(y=pg.oneof([1, 2])),
                               evaluator=evaluate_y, algorithm="random", objectives=OBJ,
                               store=url).run(max_trials=6, workers=1, executor="local")
    df = result.trials()
    assert (df["status"] == "cached").sum() == 4  # the same two architectures again
    front = result.pareto_front()
    assert sorted(front["y"]) == [1, 2] and not front["y"].duplicated().any()
    assert set(front["status"]) == {"completed"}
    folded = sorted(n for twins in front["twins"] for n in twins)
    assert folded == sorted(df.loc[df["status"] == "cached", "number"])
    # Without folding the same architecture would be listed more than once.
    done = df[df["status"].isin(["completed", "cached"])]
    assert len(done) == 6 and len(reader.fold_twins(done, list(OBJ))) == 2


def test_fold_twins_keeps_distinct_measurements_apart(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"id": [1, 2, 3, 4], "number": [0, 1, 2, 3],
                       "status": ["cached", "completed", "completed", "cached"],
                       "cached_from": [np.nan, np.nan, np.nan, 2.0],
                       "sym_hash": ["a", "a", "a", "b"],  # 4 is a functional twin of 2
                       "accuracy": [0.5, 0.5, 0.7, 0.5]})
    out = reader.fold_twins(df, ["accuracy"])
    assert list(out["number"]) == [1, 2]  # the evaluated one stands for 0 and 3
    assert list(out["twins"]) == [(0, 3), ()]
    assert list(reader.fold_twins(df.iloc[[2]], ["accuracy"])["twins"]) == [()]


def test_a_failed_trial_with_nan_values_does_not_break_the_table(tmp_path):
    url = f"sqlite:///{tmp_path}/nan.db"
    store = Store(url)
    exp_id = store.create_experiment("e", space={}, space_hash="0" * 64,
                                     algorithm={"name": "random"}, evaluator={},
                                     objectives=OBJ, config={})
    for i, (status, acc) in enumerate([("completed", 0.5), ("failed", math.nan),
                                       ("running", None)]):
        tid, _ = store.add_trial(exp_id, status="running", dna=[], decisions={},
                                 candidate="{}", sym_hash=f"{i:064x}")
        if acc is not None:
            store.update_trial(tid, status=status, metrics={"accuracy": acc},
                               costs={"params": 3.0}, error="Traceback\nValueError: nan"
                               if status == "failed" else None)
    for detail in (False, True):
        df = reader.trials_frame(store, exp_id, OBJ, detail=detail)
        assert list(df["status"]) == ["completed", "failed", "running"]
        assert df.loc[0, "accuracy"] == 0.5 and math.isnan(df.loc[1, "accuracy"])
        assert df.loc[1, "params"] == 3.0  # what the failed trial reported
    assert reader.trials_frame(store, exp_id, OBJ).loc[1, "error"] == "ValueError: nan"
    assert reader.status_counts(store, exp_id) == {"completed": 1, "failed": 1, "running": 1}
    assert reader.best_values(store, exp_id, OBJ) == {"accuracy": 0.5, "params": 3.0}
    store.close()


def test_an_experiment_without_trials_reads_empty(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    exp_id = store.create_experiment("e", space={}, space_hash="0" * 64,
                                     algorithm={"name": "random"}, evaluator={},
                                     objectives=OBJ, config={})
    for detail in (False, True):
        df = reader.trials_frame(store, exp_id, OBJ, detail=detail)
        assert df.empty and list(df.columns[:3]) == ["number", "status", "summary"]
        assert list(df.attrs["values"]) == ["accuracy", "params"]
    assert reader.number_range(store, exp_id) is None and reader.stamp(store, exp_id) == ()
    assert reader.decisions_frame(store, exp_id).columns.tolist() == ["number"]
    store.close()
