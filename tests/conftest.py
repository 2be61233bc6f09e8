"""Shared fixtures: store URLs for every backend (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/toyspace.py
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
pgtools = importlib.import_module("pgtools")  # from tests/, on the path from here on
POSTGRES_URL, reset_postgres = pgtools.POSTGRES_URL, pgtools.reset_postgres

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


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
