"""The same seed gives the same bytes: fold 0 of every default recipe of each built-in competition, on its embedded
sample (quick, seed 42), predicts exactly the OOF and test bytes recorded in bench/oof_digests.json, and another
seed gives other predictions.

The digests are those of commit f0b69d5, before the package was regrouped by layer, so this test is also the proof
that the regrouping (and every refactor after it) changed no number. A change that means to change predictions (a
better recipe, a new default) re-records them, and says so in its commit:

    python bench/oof_digests.py --write bench/oof_digests.json

Bytes of float arithmetic belong to one machine: where a library version or the CPU (model and instruction-set
flags) differ from the recorded ones, the run is repeated in a second folder and the two must be equal instead
(torch, numpy, albumentations and the loaders all seeded from --seed)."""
from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest

import kitbox
from helpers.paths import REPO

spec = importlib.util.spec_from_file_location("oof_digests", REPO / "bench" / "oof_digests.py")
oof_digests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oof_digests)
RECORDED = json.loads((REPO / "bench" / "oof_digests.json").read_text())

OTHER_SEED = {"digits": "small_cnn", "rossmann": "entity_embedding", "disaster-tweets": "ulmfit",
              "dogs-vs-cats": "cnn"}  # competition -> a recipe whose fold-0 OOF another seed must change


def needs_weights(name: str) -> None:
    if name == "dogs-vs-cats" and not oof_digests.WEIGHTS.exists():
        pytest.skip(f"needs {oof_digests.WEIGHTS} (the ImageNet weights beside the repo)")


@pytest.mark.slow
@pytest.mark.parametrize("name", oof_digests.COMPETITIONS)
def test_the_same_seed_gives_the_recorded_bytes(name, tmp_path):
    needs_weights(name)
    found = oof_digests.digests(name, tmp_path / "a")
    assert found and all(key.startswith(name + "/") for key in found)
    if oof_digests.environment() == RECORDED["environment"]:
        wanted = {k: v for k, v in RECORDED["digests"].items() if k.startswith(name + "/")}
        assert found == wanted  # every default recipe, fold 0, to the byte, as at f0b69d5
    else:  # another machine: the same seed twice in this process's machine gives the same bytes
        assert oof_digests.digests(name, tmp_path / "b") == found


@pytest.mark.parametrize("name", sorted(OTHER_SEED))
def test_another_seed_gives_other_predictions(name, tmp_path):
    """Seed 7's fold 0 differs from seed 42's: the recorded bytes where this machine matches them, else a run."""
    needs_weights(name)
    recipe = OTHER_SEED[name]

    def fold0(seed: int) -> bytes:
        run_dir = tmp_path / str(seed)
        kwargs = {"weights": oof_digests.WEIGHTS} if name == "dogs-vs-cats" else {}
        kitbox.run(name, folds=[0], recipes=recipe, seed=seed, quick=True, run_dir=run_dir, progress=False,
                   log=lambda *_: None, **kwargs)
        return next((run_dir / recipe).glob("*/fold0/oof.npy")).read_bytes()

    other = fold0(7)
    if oof_digests.environment() == RECORDED["environment"]:
        assert hashlib.sha256(other).hexdigest() != RECORDED["digests"][f"{name}/{recipe}/oof.npy"]
    else:
        assert other != fold0(42)
    assert np.isfinite(np.load(next((tmp_path / "7" / recipe).glob("*/fold0/oof.npy")))).all()
