"""Fixtures shared by the search-space tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors gain nothing from threads; one keeps a loaded CPU from stalling them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
