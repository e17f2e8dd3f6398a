"""Fixtures shared by the test modules."""

import pytest
import torch

from wsolbench.registry import default_registry


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster, and immune to a busy machine's oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def registry():
    """The registry of the installed plugins."""
    return default_registry()
