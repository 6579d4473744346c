"""Folds as Ray tasks on a local cluster: parallel folds give the sequential run's predictions, a failed task leaves
the other folds intact so a rerun trains only the missing one, and a recipe that needs another runs after it."""
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'kitbox[ray]')")

from kitbox.pipeline import cv
from kitbox.pipeline import stages as pipeline  # noqa: E402
from kitbox.pipeline.ray import run_plan_on_ray  # noqa: E402
from ray_comp import SmallDigits  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))  # Ray workers import ray_comp from here
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _plan(tmp_path, run_dir, recipes=None, refit=False):
    comp = SmallDigits()
    comp.refit = refit
    if not (tmp_path / "data").exists():  # written once: a newer file is other data (a new fingerprint)
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "README").write_text("scikit-learn's digits, made in memory")
    return pipeline.prepare(comp, tmp_path / "data", folds=2, recipes=recipes, run_dir=run_dir, log=lambda *_: None)


@pytest.mark.slow
def test_two_folds_on_ray_match_the_sequential_run_and_failures_resume(local_ray, tmp_path):
    sequential = pipeline.train(_plan(tmp_path, tmp_path / "seq", ["mlp"]))

    plan = _plan(tmp_path, tmp_path / "ray", ["mlp"])
    config = plan.recipes["mlp"].config_dir
    config.mkdir(parents=True)
    (config / "fail_fold1").touch()  # fold 1's task raises: fold 0 must still land
    failures = run_plan_on_ray(plan, address="local", log=lambda *_: None)
    assert list(failures) == [("mlp", 1)]
    assert cv.is_done(config, 0) and not cv.is_done(config, 1)
    fold0 = (config / "fold0" / "oof.npy").read_bytes()

    (config / "fail_fold1").unlink()
    assert run_plan_on_ray(plan, address="local", log=lambda *_: None) == {}
    assert (config / "fold0" / "oof.npy").read_bytes() == fold0  # not retrained

    on_ray = pipeline.train(_plan(tmp_path, tmp_path / "ray", ["mlp"]), ray="local")
    oof_seq, mask = sequential["mlp"].oof()
    oof_ray, mask_ray = on_ray["mlp"].oof()
    assert mask.all() and mask_ray.all()
    np.testing.assert_allclose(oof_ray, oof_seq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_ray["mlp"].test(), sequential["mlp"].test(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_recipe_that_needs_another_runs_after_it_on_ray_and_refits_follow(local_ray, tmp_path):
    plan = _plan(tmp_path, tmp_path / "run", ["stacked"], refit=True)
    assert list(plan.recipes) == ["mlp", "stacked"]  # the needed recipe is added, and runs first
    assert run_plan_on_ray(plan, address="local", log=lambda *_: None) == {}
    results = pipeline.train(_plan(tmp_path, tmp_path / "run", ["stacked"], refit=True), ray="local")
    for name in ("mlp", "stacked"):
        assert results[name].complete and results[name].refit is not None
    stacked = results["stacked"]
    assert stacked.finished[0].info["read_from"] == str(plan.recipes["mlp"].config_dir / "fold0")
    assert stacked.refit.info["read_from"] == str(plan.recipes["mlp"].config_dir / "refit")
