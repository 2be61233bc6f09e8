"""Batched writes of the store: update_trials in one transaction, add_trial's derived fields."""

import pytest

from memnas.errors import StoreError
from memnas.store import Store

EXP = dict(space={"_type": "x"}, space_hash="h", algorithm={"name": "random"},
           evaluator={"type": "f"}, objectives={"accuracy": "max"}, config={}, fingerprint="fp")


def _trial(i, **kw):
    return dict(status="running", dna=[i], decisions={"a": i}, candidate="{}", summary=f"t{i}",
                sym_hash=f"h{i}", **kw)


def test_add_trial_derives_fields_from_its_number(store_url):
    s = Store(store_url)
    exp_id = s.create_experiment("e", **EXP)
    got = [s.add_trial(exp_id, derive=lambda n: {"seed": 100 + n}, **_trial(i)) for i in range(3)]
    assert [n for _, n in got] == [0, 1, 2]
    rows = s.trials(exp_id)
    assert [r["seed"] for r in rows] == [100, 101, 102]
    assert all(r["created_at"] is not None and r["metrics"] == {} for r in rows)


def test_update_trials_writes_a_batch_or_nothing(store_url):
    s = Store(store_url)
    exp_id = s.create_experiment("e", **EXP)
    ids = [s.add_trial(exp_id, **_trial(i))[0] for i in range(3)]
    s.update_trials([(ids[0], [{"step": 0, "name": "loss", "value": 1.0}],
                      {"status": "completed", "metrics": {"accuracy": 0.5}, "costs": {}}),
                     (ids[1], (), {"status": "failed", "error": "boom"}),
                     (ids[2], [{"step": 1, "name": "loss", "value": 2.0}], {})])
    rows = {r["id"]: r for r in s.trials(exp_id)}
    assert rows[ids[0]]["status"] == "completed" and rows[ids[0]]["metrics"] == {"accuracy": 0.5}
    assert rows[ids[1]]["status"] == "failed" and rows[ids[1]]["error"] == "boom"
    assert rows[ids[2]]["status"] == "running" and s.curve(ids[2])[0]["value"] == 2.0
    with pytest.raises(StoreError, match="no trial with id 999999"):
        s.update_trials([(ids[2], (), {"status": "completed"}), (999999, (), {"status": "failed"})])
    assert s.trials(exp_id)[2]["status"] == "running"   # the batch was rolled back
    with pytest.raises(StoreError, match="no trial with id 999999"):
        s.update_trial(999999, curve=[{"step": 0, "name": "loss", "value": 1.0}])


def test_evaluations_lookup_by_either_hash(store_url):
    s = Store(store_url)
    exp_id = s.create_experiment("e", **EXP)
    a, _ = s.add_trial(exp_id, **_trial(0, fn_hash="f0"))
    s.update_trial(a, status="completed", metrics={"accuracy": 1.0})
    assert [r["id"] for r in s.evaluations("fp", "h0")] == [a]
    assert [r["id"] for r in s.evaluations("fp", "other", "f0")] == [a]
    assert s.evaluations("fp", "other") == [] and s.evaluations("other-fp", "h0") == []
    assert s.evaluations("fp", "h0")[0]["metrics"] == {"accuracy": 1.0}
