"""Shared fixtures: store URLs for every backend (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/toyspace.py
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

POSTGRES_URL = os.environ.get("MEMNAS_TEST_POSTGRES")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def reset_postgres(url: str) -> None:
    """Drops every memnas table of the PostgreSQL test database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS feedback, artifacts, curve_points, trials, experiments, "
                             "memnas_version, memnas_alembic_version CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """A URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/memnas.db"
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A URL of an empty SQLite store in a temporary folder."""
    return f"sqlite:///{tmp_path}/memnas.db"


@pytest.fixture
def one_thread():
    """Torch on one thread: small tensors gain nothing from threads, and one keeps a
    loaded CPU from stalling them. Use with ``pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
