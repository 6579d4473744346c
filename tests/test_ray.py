"""Folds as Ray tasks on a local cluster: parallel folds give the sequential run's predictions, and a failed task
leaves the other folds intact so a rerun trains only the missing one."""
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'kitbox[ray]')")

from kitbox import cv  # noqa: E402
from kitbox.ray_runner import run_folds_on_ray  # noqa: E402
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


@pytest.mark.slow
def test_two_folds_on_ray_match_the_sequential_run_and_failures_resume(local_ray, tmp_path):
    comp = SmallDigits()
    data = comp.load(tmp_path)
    y = comp.targets(data)
    folds = comp.split(data, 2, seed=0)

    sequential = cv.run_cv(data, folds, comp.recipes(), y, comp.metric, tmp_path / "seq", log=lambda *_: None)

    run_dir = tmp_path / "ray"
    run_dir.mkdir()
    (run_dir / "fail_fold1").touch()  # fold 1's task raises: fold 0 must still land
    failures = run_folds_on_ray(comp, tmp_path, folds, ["mlp"], y, run_dir, log=lambda *_: None)
    assert list(failures) == [("mlp", 1)]
    assert cv.is_done(run_dir, "mlp", 0) and not cv.is_done(run_dir, "mlp", 1)
    fold0 = (run_dir / "mlp" / "fold0" / "oof.npy").read_bytes()

    (run_dir / "fail_fold1").unlink()
    assert run_folds_on_ray(comp, tmp_path, folds, ["mlp"], y, run_dir, log=lambda *_: None) == {}
    assert (run_dir / "mlp" / "fold0" / "oof.npy").read_bytes() == fold0  # not retrained

    on_ray = cv.run_cv(data, folds, comp.recipes(), y, comp.metric, run_dir, only_folds=[], log=lambda *_: None)
    oof_seq, mask = sequential["mlp"].oof()
    oof_ray, mask_ray = on_ray["mlp"].oof()
    assert mask.all() and mask_ray.all()
    np.testing.assert_allclose(oof_ray, oof_seq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_ray["mlp"].test(), sequential["mlp"].test(), rtol=1e-5, atol=1e-6)
