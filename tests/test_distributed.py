"""Data parallelism on CPU: two gloo processes under torchrun reproduce one process's losses and predictions."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def run(tmp_path, nproc):
    out = tmp_path / f"result_{nproc}.npz"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(HERE / "ddp_worker.py"), str(out)]
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
