"""Schema migrations: pre-Alembic stores open, upgrade and resume; newer ones are refused."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from memnas.errors import StoreError
from memnas.store import SCHEMA_VERSION, Store
from memnas.store import _schema

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
sys.path.insert(0, FIXTURES)  # v1_experiment, under the name the fixture was made with

import v1_experiment as v1  # noqa: E402

V1_STORES = ["v1_store.sqlite", "v1_store_no_artifacts.sqlite"]
V1_TABLES = ["memnas_version", "experiments", "trials", "curve_points", "artifacts"]
POSTGRES_URL = os.environ.get("MEMNAS_TEST_POSTGRES")
PG_SCHEMA = "memnas_migrations_test"


def _copy(name: str, tmp_path: Any) -> str:
    """A copy of a fixture store; returns its path (the fixture itself is never opened)."""
    path = str(tmp_path / name)
    shutil.copyfile(os.path.join(FIXTURES, name), path)
    return path


def _raw_rows(path: str) -> dict[str, list[tuple]]:
    """Every row of the v1 data tables, as sqlite3 reads them (read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
               for t in V1_TABLES[1:] if t in names}
    conn.close()
    return out


def _snapshot(store: Store) -> dict[str, Any]:
    """What the store API reads: experiments, trials, curves and artifact listings."""
    out: dict[str, Any] = {}
    for exp in store.experiments():
        trials = store.trials(exp["id"])
        out[exp["name"]] = {"experiment": exp, "trials": trials,
                            "curves": {t["id"]: store.curve(t["id"]) for t in trials},
                            "artifacts": {t["id"]: store.artifacts(t["id"]) for t in trials}}
    return out


def _indexes(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = {i["name"] for i in sa.inspect(conn).get_indexes("trials")}
    engine.dispose()
    return names


def _state(url: str) -> _schema.SchemaState:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        state = _schema.read_state(conn)
    engine.dispose()
    return state


def _schema_diff(url: str) -> list:
    """Alembic's autogenerate diff between the database and the models ([] when they match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from memnas.store._models import Base

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "version_table": _schema.VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    return diff


def _resume_and_check(url: str, before: dict[str, Any]) -> None:
    """Continues experiment v1 to 8 trials: its crashed trial runs again, the rest is kept."""
    v1.experiment(url).run(max_trials=8, executor="local")
    store = Store(url, read_only=True)
    exp = store.experiment(v1.NAME)
    trials = {t["number"]: t for t in store.trials(exp["id"])}
    assert sorted(trials) == list(range(8))
    assert all(t["status"] in ("completed", "cached") for t in trials.values()), trials
    old = {t["number"]: t for t in before[v1.NAME]["trials"]}
    assert old[v1.CRASH_AT]["status"] == "running"
    rerun = trials[v1.CRASH_AT]
    assert rerun["status"] == "completed" and rerun["attempt"] == 2
    assert rerun["id"] == old[v1.CRASH_AT]["id"] and rerun["finished_at"] is not None
    for n in range(v1.CRASH_AT):
        assert trials[n] == old[n]
        assert store.curve(trials[n]["id"]) == before[v1.NAME]["curves"][trials[n]["id"]]
    assert len(store.curve(rerun["id"])) == 3
    assert store.load_artifact(rerun["id"])["w"].shape == (3,)
    done = store.experiment(v1.DONE_NAME)
    assert store.trials(done["id"]) == before[v1.DONE_NAME]["trials"]
    store.close()


@pytest.fixture(autouse=True)
def _no_crash(monkeypatch):
    monkeypatch.delenv(v1.CRASH_ENV, raising=False)


# ---- revisions --------------------------------------------------------------------


def test_revisions_are_one_chain_numbered_by_schema_version():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", _schema.MIGRATIONS_DIR)
    script = ScriptDirectory.from_config(config)
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert chain == list(_schema.REVISIONS) and script.get_heads() == [_schema.HEAD]
    for number, rev in enumerate(chain, 1):
        assert script.get_revision(rev).module.SCHEMA_VERSION == number == int(rev[:4])
    assert SCHEMA_VERSION == len(chain)


def test_new_store_is_stamped_head_and_matches_the_models(store_url):
    Store(store_url).close()
    state = _state(store_url)
    assert (state.revision, state.schema_version) == (_schema.HEAD, SCHEMA_VERSION)
    assert "ix_trials_finished_at" in _indexes(store_url)
    assert _schema_diff(store_url) == []


def test_opening_a_store_that_is_up_to_date_needs_no_alembic(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    Store(url).close()
    code = ("import sys; from memnas.store import Store; Store(sys.argv[1]).close(); "
            "Store(sys.argv[1], read_only=True).close(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


# ---- the store made before Alembic ---------------------------------------------------


@pytest.mark.parametrize("name", V1_STORES)
def test_v1_store_opens_read_only_without_a_write(name, tmp_path):
    from click.testing import CliRunner

    from memnas.cli import main

    path = _copy(name, tmp_path)
    url = f"sqlite:///{path}"
    digest, mtime = hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns
    store = Store(url, read_only=True)
    snap = _snapshot(store)
    trials = {t["number"]: t for t in snap[v1.NAME]["trials"]}
    assert trials[v1.CRASH_AT]["status"] == "running" and len(trials) == v1.CRASH_AT + 1
    first = trials[0]["id"]
    assert len(snap[v1.NAME]["curves"][first]) == 3
    if name == "v1_store.sqlite":
        assert snap[v1.NAME]["artifacts"][first][0]["kind"] == "output"
        assert store.load_artifact(first)["w"].shape == (3,)
    else:
        assert snap[v1.NAME]["artifacts"][first] == [] and store.load_artifact(first) is None
    store.close()
    for args in (["ls"], ["show", v1.NAME], ["show", v1.DONE_NAME]):
        r = CliRunner().invoke(main, [*args, "--store", url])
        assert r.exit_code == 0, r.output
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    assert os.stat(path).st_mtime_ns == mtime
    state = _state(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert _schema.VERSION_TABLE not in state.tables and state.revision is None
    assert state.schema_version == 1


@pytest.mark.parametrize("name", V1_STORES)
def test_v1_store_opened_for_writing_is_upgraded_and_keeps_everything(name, tmp_path):
    path = _copy(name, tmp_path)
    url = f"sqlite:///{path}"
    rows = _raw_rows(path)
    before = _snapshot(Store(url, read_only=True))
    store = Store(url)
    state = _state(url)
    assert (state.revision, state.schema_version) == (_schema.HEAD, SCHEMA_VERSION)
    assert "ix_trials_finished_at" in _indexes(url) and "artifacts" in state.tables
    assert _schema_diff(url) == []
    assert _snapshot(store) == before
    after = _raw_rows(path)
    width = {t: len(rs[0]) if rs else 0 for t, rs in rows.items()}  # later columns appended
    assert {t: [r[:width[t]] for r in after[t]] for t in rows} == rows
    assert all(set(r[width["trials"]:]) == {None} for r in after["trials"])  # as NULL
    assert after["artifacts"] == ([] if name.endswith("no_artifacts.sqlite") else rows["artifacts"])
    store.close()
    Store(url).close()  # now up to date: opens as it is
    assert _raw_rows(path) == after


@pytest.mark.parametrize("name", V1_STORES)
def test_v1_store_resumes_its_crashed_experiment(name, tmp_path):
    path = _copy(name, tmp_path)
    url = f"sqlite:///{path}"
    before = _snapshot(Store(url, read_only=True))
    _resume_and_check(url, before)  # the run opens the store for writing: upgraded first
    assert _state(url).revision == _schema.HEAD


def test_v1_store_opened_by_several_processes_at_once_is_upgraded_without_a_clash(tmp_path):
    path = _copy("v1_store_no_artifacts.sqlite", tmp_path)
    url = f"sqlite:///{path}"
    code = "import sys; from memnas.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1000:] for e in errors]
    assert _state(url).revision == _schema.HEAD and _schema_diff(url) == []


# ---- newer and foreign stores ------------------------------------------------------


@pytest.mark.parametrize("read_only", [False, True])
def test_store_with_a_newer_revision_is_refused_in_one_line(store_url, read_only):
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {_schema.VERSION_TABLE} SET version_num = '0099_later'"))
    engine.dispose()
    with pytest.raises(StoreError) as info:
        Store(store_url, read_only=read_only)
    msg = str(info.value)
    assert "\n" not in msg and "is newer than this memnas" in msg
    assert "revision '0099_later'" in msg and f"revision {_schema.HEAD!r}" in msg
    assert f"has schema version {SCHEMA_VERSION}" in msg


def test_store_with_a_newer_schema_version_is_refused_read_only_too(sqlite_url):
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE memnas_version SET schema_version = :v"),
                     {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(StoreError, match=f"it has schema version {SCHEMA_VERSION + 1}, "
                                         f"revision {_schema.HEAD!r}; this memnas"):
        Store(sqlite_url, read_only=True)


def test_schema_version_that_disagrees_with_the_revision_is_named(sqlite_url):
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE memnas_version SET schema_version = 1"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema version 1 but revision '0004"):
        Store(sqlite_url)


# ---- PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of an empty PostgreSQL schema of its own (``search_path``), dropped after."""
    if not POSTGRES_URL:
        pytest.skip("MEMNAS_TEST_POSTGRES is not set")
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{PG_SCHEMA}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
    engine.dispose()


def _v1_on_postgres(name: str, tmp_path: Any, url: str) -> None:
    """The fixture store's rows in a PostgreSQL database with the baseline schema and no
    revision: a store as memnas wrote it on PostgreSQL before Alembic."""
    src = sa.create_engine(f"sqlite:///{_copy(name, tmp_path)}")
    dst = sa.create_engine(url)
    with dst.connect() as conn:
        _schema.upgrade(conn, _schema.REVISIONS[0])
        conn.commit()
    with src.connect() as s, dst.begin() as d:
        present = set(sa.inspect(s).get_table_names())
        for table in V1_TABLES[1:]:
            if table not in present:
                d.execute(sa.text(f"DROP TABLE {table}"))
                continue
            rows = [dict(r) for r in s.execute(
                sa.select(sa.Table(table, sa.MetaData(), autoload_with=s))).mappings()]
            d.execute(sa.insert(sa.Table(table, sa.MetaData(), autoload_with=d)), rows)
            d.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT max(id) FROM {table}))"))
        d.execute(sa.text(f"DROP TABLE {_schema.VERSION_TABLE}"))
    src.dispose()
    dst.dispose()


@pytest.mark.parametrize("name", V1_STORES)
def test_v1_store_on_postgres_upgrades_and_resumes(name, tmp_path, pg_url):
    _v1_on_postgres(name, tmp_path, pg_url)
    state = _state(pg_url)
    assert state.revision is None and state.schema_version == 1
    assert ("artifacts" in state.tables) == (name == "v1_store.sqlite")
    before = _snapshot(Store(f"sqlite:///{_copy(name, tmp_path)}", read_only=True))
    ro = Store(pg_url, read_only=True)
    assert _snapshot(ro) == before
    ro.close()
    assert _state(pg_url) == state  # read-only: nothing written
    Store(pg_url).close()
    state = _state(pg_url)
    assert (state.revision, state.schema_version) == (_schema.HEAD, SCHEMA_VERSION)
    assert "ix_trials_finished_at" in _indexes(pg_url) and _schema_diff(pg_url) == []
    assert _snapshot(Store(pg_url, read_only=True)) == before
    _resume_and_check(pg_url, before)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_go_down_and_up_again(backend, tmp_path, request):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path}/d.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    Store(url).close()
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", _schema.MIGRATIONS_DIR)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, _schema.REVISIONS[0])
        conn.commit()
    engine.dispose()
    state = _state(url)
    assert (state.revision, state.schema_version) == (_schema.REVISIONS[0], 1)
    assert "ix_trials_finished_at" not in _indexes(url)
    Store(url).close()
    assert _state(url).revision == _schema.HEAD and _schema_diff(url) == []
