"""One store contract, run against every backend (SQLite; PostgreSQL when configured)."""

import sqlalchemy as sa
import pytest

from memnas.errors import StoreError
from memnas.store import SCHEMA_VERSION, Store

EXP = dict(space={"_type": "x"}, space_hash="h", algorithm={"name": "random"},
           evaluator={"type": "f"}, objectives={"accuracy": "max"}, config={})


def _trial(i, **kw):
    return dict(status="pending", dna=[i], decisions={"a": i},
                candidate="{}", summary=f"t{i}", sym_hash=f"h{i}", seed=i, **kw)


def test_create_and_read_experiment(store_url):
    s = Store(store_url)
    exp_id = s.create_experiment("e1", **EXP)
    e = s.experiment("e1")
    assert e["id"] == exp_id and e["status"] == "created" and e["objectives"] == {"accuracy": "max"}
    assert s.experiment("missing") is None
    with pytest.raises(StoreError, match="'e1' already exists"):
        s.create_experiment("e1", **EXP)
    with pytest.raises(StoreError, match=r"no experiment named 'zz'.*found: 'e1'"):
        s.require_experiment("zz")


def test_trials_curves_and_counts(store_url):
    s = Store(store_url)
    exp_id = s.create_experiment("e", **EXP)
    added = [s.add_trial(exp_id, **_trial(i)) for i in range(3)]
    assert [number for _, number in added] == [0, 1, 2]
    ids = [trial_id for trial_id, _ in added]
    s.update_trial(ids[0], status="completed", metrics={"accuracy": 0.5}, costs={"params": 3.0},
                   curve=[{"step": 0, "name": "loss", "value": 2.0},
                          {"step": 1, "name": "loss", "value": 1.0},
                          {"step": 1, "name": "loss", "value": 0.5}])
    s.update_trial(ids[1], status="failed", error="Traceback ...\nValueError: bad")
    trials = s.trials(exp_id)
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert trials[0]["metrics"] == {"accuracy": 0.5} and trials[0]["decisions"] == {"a": 0}
    assert [t["number"] for t in s.trials(exp_id, statuses=["failed"])] == [1]
    assert s.curve(ids[0]) == [{"step": 0, "name": "loss", "value": 2.0},
                               {"step": 1, "name": "loss", "value": 0.5}]
    assert s.trial(exp_id, 2)["status"] == "pending"
    (e,) = s.experiments()
    assert e["counts"] == {"completed": 1, "failed": 1, "pending": 1} and e["num_trials"] == 3


def test_trial_numbers_are_per_experiment(store_url):
    s = Store(store_url)
    a = s.create_experiment("a", **EXP)
    b = s.create_experiment("b", **EXP)
    assert s.add_trial(a, **_trial(0))[1] == 0
    assert s.add_trial(b, **_trial(0))[1] == 0  # numbering restarts per experiment
    assert s.add_trial(a, **_trial(1))[1] == 1


_WRITER = """
import sys
from memnas.store import Store
url, n = sys.argv[1], int(sys.argv[2])
s = Store(url)
exp_id = s.experiment("busy")["id"]
numbers = [s.add_trial(exp_id, status="pending", dna=[i], decisions={}, candidate="{}",
                       sym_hash=f"h{i}")[1] for i in range(n)]
print(" ".join(map(str, numbers)))
"""


def test_concurrent_writers_lose_no_row_and_share_no_number(store_url):
    import subprocess
    import sys

    s = Store(store_url)
    exp_id = s.create_experiment("busy", **EXP)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, store_url, "25"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outs]
    flat = sorted(int(n) for out, _ in outs for n in out.split())
    assert flat == list(range(200))
    assert sorted(t["number"] for t in s.trials(exp_id)) == list(range(200))


def test_reopen_keeps_data_and_checks_version(store_url):
    s = Store(store_url)
    s.create_experiment("keep", **EXP)
    s.close()
    s2 = Store(store_url)
    assert s2.experiment("keep") is not None
    with s2.engine.begin() as conn:
        conn.execute(sa.text("UPDATE memnas_version SET schema_version = :v"),
                     {"v": SCHEMA_VERSION + 7})
    s2.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 7}"):
        Store(store_url)


def test_read_only_store_does_not_create_tables(tmp_path):
    url = f"sqlite:///{tmp_path}/absent.db"
    with pytest.raises(StoreError, match="does not exist"):
        Store(url, read_only=True)
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize("url,match", [
    ("sqlite:////no/such/folder/x.db", "folder '/no/such/folder' does not exist"),
    ("nosuchdb://host/x", "cannot open store 'nosuchdb://host/x'"),
    ("postgresql+psycopg://u:p@127.0.0.1:1/db", "cannot open store .*Connection refused|cannot open store"),
    ("sqlite:///::::/%%", "cannot open store|not a valid"),
])
def test_bad_urls_give_one_line_errors(url, match):
    with pytest.raises(StoreError, match=match) as info:
        Store(url)
    assert "\n" not in str(info.value)


def test_sqlite_is_in_wal_mode(sqlite_url):
    s = Store(sqlite_url)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_read_only_open_of_a_foreign_database_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with pytest.raises(StoreError, match="is not a memnas store"):
        Store(f"sqlite:///{path}", read_only=True)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
