"""Fixtures shared by the search-space tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every search-space test runs torch on one thread (see tests/conftest.py)."""
    yield
