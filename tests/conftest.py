"""Shared test fixtures: where the real Kaggle data lives, and a fast CPU setup."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def shared_path(*parts) -> Path:
    """A path under ../shared, or skip the test with the reason when that folder is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the real Kaggle data beside the repo); not present in this checkout")
    return path


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
