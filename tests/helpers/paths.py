"""Where the repository and the real Kaggle data beside it live; a test that needs that data skips without it."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def shared_path(*parts) -> Path:
    """A path under ../shared, or skip the test with the reason when that folder is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the real Kaggle data beside the repo); not present in this checkout")
    return path
