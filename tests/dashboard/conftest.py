"""A real SQLite store for the dashboard tests, filled by running tiny experiments in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dashboard_helpers import TWO, fill_more, fill_store
from memnas.store import Store, reader

if TYPE_CHECKING:
    import pandas as pd


@pytest.fixture(scope="session")
def dashboard_store(tmp_path_factory) -> str:
    """URL of a store with a two-objective, a single-objective, an all-failed, a
    memory-space and a cache-hitting experiment."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard')}/store.db"
    fill_store(url)
    fill_more(url)
    return url


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> str:
    """URL of a store with its tables but no experiments."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard_empty')}/empty.db"
    Store(url).close()
    return url


@pytest.fixture
def two_objective_frame(dashboard_store) -> tuple[dict, "pd.DataFrame"]:
    """The two-objective experiment's row and its trials frame (`reader.trials_frame`)."""
    store = Store(dashboard_store, read_only=True)
    try:
        exp = store.require_experiment(TWO)
        return exp, reader.trials_frame(store, exp["id"], exp["objectives"])
    finally:
        store.close()
