"""Fixtures every test gets: one torch thread, and CUDA tests skipped without a GPU. Shared helpers live in
tests/helpers (paths, small competitions, reference schedules)."""
import pytest

@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; one torch thread per test keeps timings stable and leaves a core for the rest.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config, items):
    """CUDA-marked tests skip, with the reason, where torch sees no GPU (this CPU machine, CI)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
