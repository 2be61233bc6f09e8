"""The store's schema version: checked on every open; new stores created, older ones upgraded.

Two tables say which schema a store has: ``memnas_version`` (one row: the schema version,
a number every memnas reads, even those before Alembic) and `VERSION_TABLE` (Alembic's
revision). Every change of the schema is an Alembic revision in ``migrations/versions``
that also raises the schema version by one. Deciding that a store is up to date needs
no Alembic (a read of both tables); Alembic is imported only to upgrade a store.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import sqlalchemy as sa

from memnas.errors import StoreError
from memnas.store._models import Base, VersionInfo

REVISIONS = ("0001_baseline", "0002_trials_finished_at", "0003_feedback_order",
             "0004_trial_budgets")
"""Alembic revisions in order; the schema version of ``REVISIONS[i]`` is ``i + 1``."""
HEAD = REVISIONS[-1]
SCHEMA_VERSION = len(REVISIONS)
"""The schema version this memnas writes (stores back to version 1 are upgraded)."""
VERSION_TABLE = "memnas_alembic_version"
"""Alembic's version table, under a name of memnas's own: a database may hold others."""
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

_MEMNAS_TABLES = frozenset({"experiments", "trials", "curve_points", "artifacts", "feedback"})
_LOCK_KEY = 0x6D656D6E6173  # "memnas": PostgreSQL advisory lock held while creating/upgrading

_version_table = sa.Table(  # as Alembic creates it
    VERSION_TABLE, sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))

Action = Literal["ok", "create", "upgrade"]


@dataclasses.dataclass(frozen=True)
class SchemaState:
    """What a database says about its memnas schema.

    Attributes:
      tables: the names of its tables.
      schema_version: ``memnas_version.schema_version``; None without the row.
      revision: the Alembic revision; None without one (a store from before Alembic).
    """

    tables: frozenset[str]
    schema_version: int | None
    revision: str | None


def read_state(conn: sa.Connection) -> SchemaState:
    """Reads the schema state of the database behind ``conn`` (reads only)."""
    tables = frozenset(sa.inspect(conn).get_table_names())
    version = revision = None
    if "memnas_version" in tables:
        version = conn.execute(sa.select(VersionInfo.schema_version)
                               .where(VersionInfo.id == 1)).scalar()
    if VERSION_TABLE in tables:
        revisions = sorted(conn.execute(sa.select(_version_table.c.version_num)).scalars())
        revision = "+".join(revisions) or None  # several heads: a revision we do not know
    return SchemaState(tables, version, revision)


def judge(state: SchemaState, shown_url: str, read_only: bool) -> Action:
    """What opening the store needs: nothing, creating its tables, or an upgrade.

    Raises:
      StoreError: the database is not a memnas store (or, read-only, not one yet), or
        its schema is newer than this memnas's or one it cannot upgrade.
    """
    from memnas import __version__

    if "memnas_version" not in state.tables:
        if state.tables & {"experiments", "trials"}:
            raise StoreError(f"store {shown_url!r} has memnas tables but no schema version; "
                             "it was not written by this memnas")
        if read_only:
            raise StoreError(f"store {shown_url!r} is not a memnas store (no memnas tables)")
        return "create"
    version, revision = state.schema_version, state.revision
    ours = f"this memnas ({__version__}) has schema version {SCHEMA_VERSION}, revision {HEAD!r}"
    if (version is not None and version > SCHEMA_VERSION) or \
            (revision is not None and revision not in REVISIONS):
        raise StoreError(f"store {shown_url!r} is newer than this memnas: it has schema version "
                         f"{version}, revision {revision!r}; {ours}; use a newer memnas or a "
                         "new store URL")
    if version is None or version < 1:
        raise StoreError(f"store {shown_url!r} has schema version {version}, this memnas "
                         f"({__version__}) reads versions 1 to {SCHEMA_VERSION}; use a matching "
                         "memnas or a new store URL")
    expected = 1 if revision is None else REVISIONS.index(revision) + 1
    if version != expected:
        raise StoreError(f"store {shown_url!r} has schema version {version} but revision "
                         f"{revision!r} (of schema version {expected}); it was changed by hand")
    return "ok" if revision == HEAD else "upgrade"


def open_schema(engine: sa.Engine, shown_url: str, read_only: bool) -> frozenset[str]:
    """Checks the store's schema when it is opened; returns its tables.

    Up to date: nothing is written. An empty database (not read-only) gets the tables of
    the models and is stamped with `HEAD`. An older store opened read-only is read as it
    is; opened for writing, it is upgraded by the Alembic migrations. Creating and
    upgrading run in one transaction under a lock, so concurrent openers wait and then
    find the store done.

    Raises:
      StoreError: see `judge`.
    """
    with engine.connect() as conn:
        state = read_state(conn)
    if judge(state, shown_url, read_only) == "ok" or read_only:
        return state.tables
    with engine.connect() as conn:
        _lock(conn)
        state = read_state(conn)  # another process may have done it meanwhile
        action = judge(state, shown_url, read_only)
        if action == "create":
            _create(conn)
        elif action == "upgrade":
            upgrade(conn)
        state = read_state(conn)
        conn.commit()
    return state.tables


def _lock(conn: sa.Connection) -> None:
    """Starts the transaction that creates or upgrades, holding off other processes."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # takes the write lock now
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _create(conn: sa.Connection) -> None:
    """Creates the tables of the models in an empty database and stamps it `HEAD`."""
    from memnas import __version__

    Base.metadata.create_all(conn)
    _version_table.create(conn, checkfirst=True)
    conn.execute(sa.delete(_version_table))  # left by a store whose tables were dropped
    conn.execute(sa.insert(_version_table), {"version_num": HEAD})
    conn.execute(sa.insert(VersionInfo.__table__), {
        "id": 1, "schema_version": SCHEMA_VERSION, "memnas_version": __version__})


def upgrade(conn: sa.Connection, revision: str = "head") -> None:
    """Runs the migrations from the store's revision up to ``revision``, in the caller's
    transaction (a store from before Alembic is upgraded from nothing: see the baseline).

    Args:
      conn: a connection in a transaction; the caller commits.
      revision: the target: ``"head"`` or one of `REVISIONS`.
    """
    from alembic import command
    from alembic.config import Config

    from memnas import __version__

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
    conn.execute(sa.update(VersionInfo.__table__).values(memnas_version=__version__))
