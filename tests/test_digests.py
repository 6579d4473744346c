"""Behaviour unchanged, to the byte: fold 0 of every default recipe of every built-in competition, on its
embedded sample (quick, seed 42), predicts exactly the OOF and test bytes recorded in bench/oof_digests.json.

The digests are those of commit f0b69d5, before the package was regrouped by layer, so this test is the proof that
the regrouping (and every refactor after it) changed no number. A change that means to change predictions (a better
recipe, a new default) re-records them, and says so in its commit:

    python bench/oof_digests.py --write bench/oof_digests.json

Bytes of float arithmetic belong to one machine: where a library version or the CPU (model and instruction-set
flags) differ from the recorded ones the test skips with the reason (the same-seed test in test_reproducible.py still runs there)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from helpers.paths import REPO

spec = importlib.util.spec_from_file_location("oof_digests", REPO / "bench" / "oof_digests.py")
oof_digests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oof_digests)
RECORDED = json.loads((REPO / "bench" / "oof_digests.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", oof_digests.COMPETITIONS)
def test_every_default_recipe_predicts_the_recorded_bytes(name, tmp_path):
    here = oof_digests.environment()
    if here != RECORDED["environment"]:
        pytest.skip(f"digests recorded on {RECORDED['environment']}; this machine is {here}")
    if name == "dogs-vs-cats" and not oof_digests.WEIGHTS.exists():
        pytest.skip(f"needs {oof_digests.WEIGHTS} (the ImageNet weights beside the repo)")
    wanted = {k: v for k, v in RECORDED["digests"].items() if k.startswith(name + "/")}
    assert wanted, f"no digests recorded for {name}"
    found = oof_digests.digests(name, tmp_path)
    assert {k: found.get(k) for k in wanted} == wanted
