"""Store outages during a run: a PostgreSQL restart, dropped connections, SQLite locked, a full disk.

Every fault is real: a PostgreSQL server of the test's own stopped and started
(`memnas.testing.PgServer`), its connections terminated by ``pg_terminate_backend``, a SQLite
file locked by another connection, a SQLite store on a small tmpfs that fills up. What a
user would lose is checked: a result gone, a trial run twice to completion, a trial left
running, a run that stops without saying why.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import subprocess
import threading
import time

import pytest

import outagetoys
from memnas import testing as pgserver
from memnas.errors import StoreFull, StoreUnavailable
from memnas.store import Store


@pytest.fixture(scope="module")
def server():
    why = pgserver.why_not()
    if why:
        pytest.skip(why)
    srv = pgserver.PgServer()
    srv.start()
    yield srv
    srv.close()


def _stored(url: str, name: str) -> list[dict]:
    store = Store(url, read_only=True)
    try:
        return store.trials(store.require_experiment(name)["id"])
    finally:
        store.close()


def _when_finished(log: str, n: int, then, *args) -> threading.Thread:
    """Runs ``then(*args)`` in a thread once ``n`` evaluations have finished."""
    def wait_then():
        deadline = time.monotonic() + 60
        while len(outagetoys.finished(log)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        then(*args)
    thread = threading.Thread(target=wait_then, daemon=True)
    thread.start()
    return thread


def _exactly_once(url: str, name: str, log: str, n: int) -> list[dict]:
    trials = _stored(url, name)
    assert collections.Counter(t["status"] for t in trials) == {"completed": n}
    assert sorted(t["number"] for t in trials) == list(range(n))
    ran = collections.Counter(outagetoys.finished(log))
    assert max(ran.values()) == 1, f"run twice to completion: {ran}"
    return trials


def test_a_postgres_restart_mid_run_is_waited_out_and_the_run_finishes(server, tmp_path, capfd):
    log = str(tmp_path / "log")
    exp = outagetoys.experiment(server.url, log, name="restart", seconds=0.4)
    chaos = _when_finished(log, 4, server.outage, 10.0)
    exp.run(max_trials=12, workers=2, executor="ray", store_patience_s=120)
    chaos.join()
    _exactly_once(server.url, "restart", log, 12)
    err = capfd.readouterr().err
    waits = [line for line in err.splitlines() if "is unreachable" in line]
    assert len(waits) == 1 and "retrying for up to 120 s" in waits[0], err
    assert "is back after" in err
    assert "Traceback" not in err
    store = Store(server.url, read_only=True)
    assert store.experiment("restart")["status"] == "completed"
    store.close()


def test_connections_dropped_by_the_server_are_replaced(server, tmp_path):
    log = str(tmp_path / "log")
    exp = outagetoys.experiment(server.url, log, name="dropped", seconds=0.1)
    dropped = []

    def drop_three_times():
        for _ in range(3):
            dropped.append(server.terminate_connections())
            time.sleep(0.25)
    chaos = _when_finished(log, 3, drop_three_times)
    exp.run(max_trials=12, workers=1, executor="local", store_patience_s=60)
    chaos.join()
    assert sum(dropped) >= 1          # the driver's pooled connection was cut at least once
    _exactly_once(server.url, "dropped", log, 12)


def test_an_outage_past_the_patience_stops_in_one_line_and_resume_completes(server, tmp_path):
    log = str(tmp_path / "log")
    exp = outagetoys.experiment(server.url, log, name="gave-up", seconds=0.2)
    chaos = _when_finished(log, 3, server.stop)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as stopped:
        exp.run(max_trials=10, workers=1, executor="local", store_patience_s=2)
    waited = time.monotonic() - start
    chaos.join()
    message = str(stopped.value)
    assert "\n" not in message and server.url.split("@")[1] in message
    assert "unreachable for" in message and "memnas resume gave-up" in message
    assert waited < 30
    server.start()
    before = {t["number"]: t["metrics"] for t in _stored(server.url, "gave-up")
              if t["status"] == "completed"}
    assert before                     # what was stored before the outage is kept ...
    exp.run(max_trials=10, workers=1, executor="local", store_patience_s=2)
    after = {t["number"]: t for t in _stored(server.url, "gave-up")}
    assert collections.Counter(t["status"] for t in after.values()) == {"completed": 10}
    for number, metrics in before.items():  # ... and never run again
        assert after[number]["metrics"] == metrics and after[number]["attempt"] == 1
    again = [n for n, k in collections.Counter(outagetoys.finished(log)).items() if k > 1]
    assert not set(again) & set(before)


def test_sqlite_locked_past_its_busy_timeout_is_waited_out(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MEMNAS_SQLITE_BUSY_TIMEOUT_S", "0.3")
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    log = str(tmp_path / "log")
    # Trials long enough that the driver writes while the lock is held, however loaded
    # the machine (with 50 ms trials the run once ended before the lock was taken).
    exp = outagetoys.experiment(url, log, name="locked", seconds=0.25)

    def hold_the_lock():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(2.5)
        conn.execute("COMMIT")
        conn.close()
    chaos = _when_finished(log, 2, hold_the_lock)
    exp.run(max_trials=10, workers=1, executor="local", store_patience_s=60)
    chaos.join()
    _exactly_once(url, "locked", log, 10)
    err = capfd.readouterr().err
    assert "database is locked" in err and "is back after" in err


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs mounted for the test (needs root and mount permission)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_and_resume_completes(small_disk, tmp_path):
    ballast = small_disk / "ballast"
    ballast.write_bytes(os.urandom(1024 * 1024))        # freed later to make room
    url = f"sqlite:///{small_disk / 'store.db'}"
    log = str(tmp_path / "log")                         # on another disk
    exp = outagetoys.experiment(url, log, name="full", seconds=0.0, artifact_kb=96)
    with pytest.raises(StoreFull) as stopped:
        exp.run(max_trials=24, workers=1, executor="local")
    message = str(stopped.value)
    assert "\n" not in message and "store.db" in message and "disk" in message
    assert "memnas resume full" in message
    with sqlite3.connect(f"file:{small_disk / 'store.db'}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    before = {t["number"]: t["metrics"] for t in _stored(url, "full")
              if t["status"] == "completed"}
    assert 0 < len(before) < 24
    ballast.unlink()
    exp.run(max_trials=len(before) + 3, workers=1, executor="local")
    after = {t["number"]: t for t in _stored(url, "full")}
    assert sum(t["status"] == "completed" for t in after.values()) == len(before) + 3
    assert not [t for t in after.values() if t["status"] in ("running", "pending")]
    for number, metrics in before.items():
        assert after[number]["metrics"] == metrics and after[number]["attempt"] == 1
    store = Store(url, read_only=True)
    assert store.load_artifact(after[0]["id"])["w"].size == 96 * 128
    store.close()
