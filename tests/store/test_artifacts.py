"""Artifacts: .npz + JSON encoding, and the store's artifacts table on every backend."""

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from memnas.store import Store
from memnas.store import artifacts as _artifacts


def test_encode_decode_round_trip_nested_arrays_torch_and_json():
    payload = {"mask": {"fc1": np.array([[True, False]]), "fc2": torch.ones(2, 3)},
               "round": 3, "meta": {"rate": 0.2, "names": ["a", "b"]}}
    back = _artifacts.decode(_artifacts.encode(payload))
    assert back["mask"]["fc1"].dtype == np.bool_ and back["mask"]["fc1"].tolist() == [[True, False]]
    assert isinstance(back["mask"]["fc2"], np.ndarray) and back["mask"]["fc2"].shape == (2, 3)
    assert back["round"] == 3 and back["meta"] == {"rate": 0.2, "names": ["a", "b"]}
    assert _artifacts.describe(payload)["mask/fc2"] == "float32[2, 3]"


def test_encode_refuses_what_it_cannot_store_without_pickle():
    with pytest.raises(TypeError, match="'bad' must be an array or JSON-able, got object"):
        _artifacts.encode({"bad": object()})
    with pytest.raises(TypeError, match="object array"):
        _artifacts.encode({"x": np.array([object()])})
    with pytest.raises(TypeError, match="key 'a/b'"):
        _artifacts.encode({"a/b": 1})


def _trial(store):
    exp = store.create_experiment("e", space={}, space_hash="h", algorithm={}, evaluator={},
                                  objectives={"accuracy": "max"}, config={})
    tid, _ = store.add_trial(exp, status="pending", dna=[0], decisions={}, candidate="{}",
                             sym_hash="s")
    return tid


def test_store_saves_replaces_lists_and_loads(store_url):
    store = Store(store_url)
    tid = _trial(store)
    assert store.load_artifact(tid) is None and store.artifacts(tid) == []
    store.save_artifact(tid, "input", {"mask": np.zeros((2, 2), dtype=bool)})
    store.save_artifact(tid, "output", {"w": np.arange(4.0)})
    store.save_artifact(tid, "output", {"w": np.arange(5.0)})   # replaces, no duplicate
    assert store.load_artifact(tid)["w"].tolist() == [0, 1, 2, 3, 4]
    assert store.load_artifact(tid, "input")["mask"].shape == (2, 2)
    listed = store.artifacts(tid)
    assert [a["kind"] for a in listed] == ["input", "output"]
    assert listed[1]["keys"] == {"w": "float64[5]"} and len(listed[1]["sha256"]) == 64
    with pytest.raises(ValueError, match="'inputs'"):
        store.save_artifact(tid, "inputs", {})
    # Nothing pickled: the bytes are a plain .npz that numpy reads with pickles refused.
    with store.session() as s:
        data = s.execute(sa.text("SELECT data FROM artifacts WHERE kind = 'output'")).scalar()
    import io

    assert np.load(io.BytesIO(bytes(data)), allow_pickle=False)["w"].shape == (5,)
    store.close()


def test_store_written_before_artifacts_gains_the_table(sqlite_url):
    store = Store(sqlite_url)
    tid = _trial(store)
    with store.engine.begin() as conn:  # as the first stores were: schema version 1, no revision
        conn.execute(sa.text("DROP TABLE artifacts"))
        conn.execute(sa.text("DROP TABLE feedback"))
        conn.execute(sa.text("DROP INDEX ix_trials_finished_at"))
        for column in ("budget", "budget_key", "parent_id"):  # schema version 4
            conn.execute(sa.text(f"ALTER TABLE trials DROP COLUMN {column}"))
        conn.execute(sa.text("DROP TABLE memnas_alembic_version"))
        conn.execute(sa.text("UPDATE memnas_version SET schema_version = 1"))
    store.close()
    ro = Store(sqlite_url, read_only=True)        # a reader never creates tables
    assert ro.artifacts(tid) == [] and ro.load_artifact(tid) is None
    ro.close()
    rw = Store(sqlite_url)
    rw.save_artifact(tid, "output", {"x": 1})
    assert rw.load_artifact(tid) == {"x": 1}
    rw.close()


def test_artifacts_are_written_with_their_trial_or_not_at_all(store_url):
    store = Store(store_url)
    exp = store.create_experiment("e", space={}, space_hash="h", algorithm={}, evaluator={},
                                  objectives={"accuracy": "max"}, config={})
    row = dict(status="running", dna=[0], decisions={}, candidate="{}", sym_hash="s")
    tid, _ = store.add_trial(exp, input_artifact={"mask": np.ones(3, dtype=bool)}, **row)
    assert store.load_artifact(tid, "input")["mask"].tolist() == [True] * 3
    with pytest.raises(TypeError, match="'bad' must be an array or JSON-able"):
        store.add_trial(exp, input_artifact={"bad": object()}, **row)
    assert len(store.trials(exp)) == 1                    # no trial without its artifact
    with pytest.raises(Exception, match="no trial with id 999999"):
        store.update_trials([(tid, (), {"status": "completed"}), (999999, (), {"status": "x"})],
                            output_artifacts=[(tid, {"w": np.arange(3.0)})])
    assert store.trials(exp)[0]["status"] == "running" and store.load_artifact(tid) is None
    store.update_trials([(tid, (), {"status": "completed"})],
                        output_artifacts=[(tid, {"w": np.arange(3.0)})])
    assert store.trials(exp)[0]["status"] == "completed"
    assert store.load_artifact(tid)["w"].tolist() == [0.0, 1.0, 2.0]
    store.close()
