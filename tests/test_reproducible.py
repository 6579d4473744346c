"""The same seed gives the same result: one fold of each built-in competition, on its embedded sample, trained
twice in separate run folders, gives byte-identical out-of-fold predictions (torch, numpy, albumentations and the
loaders all seeded from --seed), and another seed gives other predictions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kitbox

RUNS = {  # competition -> the recipe and options of a short fold (the vision one needs the ImageNet weights)
    "digits": ("small_cnn", {"epochs": 1}),
    "rossmann": ("entity_embedding", {"epochs": 1}),
    "disaster-tweets": ("ulmfit", {}),
    "dogs-vs-cats": ("cnn", {}),
}


def fold0_oof(name: str, recipe: str, options: dict, run_dir: Path, seed: int = 42, **kwargs) -> bytes:
    report = kitbox.run(name, folds=[0], recipes=recipe, options=options, seed=seed, quick=True, run_dir=run_dir,
                        progress=False, log=lambda *_: None, **kwargs)
    config = next(p for p in (run_dir / recipe).iterdir() if (p / "fold0" / "oof.npy").exists())
    assert report.recipes[recipe]["missing"]  # only fold 0 ran
    return (config / "fold0" / "oof.npy").read_bytes()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_same_seed_gives_byte_identical_oof(name, tmp_path):
    recipe, options = RUNS[name]
    kwargs = {}
    if name == "dogs-vs-cats":
        from helpers.paths import shared_path

        kwargs["weights"] = shared_path("weights", "efficientnet_lite0.in1k.safetensors")
    first = fold0_oof(name, recipe, options, tmp_path / "a", **kwargs)
    again = fold0_oof(name, recipe, options, tmp_path / "b", **kwargs)
    assert first == again
    other = fold0_oof(name, recipe, options, tmp_path / "c", seed=7, **kwargs)
    assert other != first
    assert np.isfinite(np.load(next((tmp_path / "a" / recipe).glob("*/fold0/oof.npy")))).all()
