"""bench/gpu_check.py on a machine without CUDA: it says so, runs its smoke through every code path and exits 0."""
import os
import re
import subprocess
import sys

from helpers.paths import REPO


def test_gpu_check_smoke_on_cpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "no CUDA GPU on this machine" in out and "running the CPU smoke" in out
    table = out[out.index("check "):].splitlines()
    rates = {}
    for line in table[1:]:
        match = re.match(r"(.+?)\s{2,}([\d,]+) (img/s|tok/s|rows/s)", line)
        if match:
            rates[match.group(1).strip()] = float(match.group(2).replace(",", ""))
    expected = ["test_resnet 32px bs4, fixed batch", "test_efficientnet 32px bs4, fixed batch",
                "test_efficientnet 32px bs4, image_loader", "MiniLM bs4, tweets", "TabularModel 1000-500 bs64"]
    assert sorted(rates) == sorted(expected) and all(v > 0 for v in rates.values()), table
    # lean-loop comparisons carry a ratio; the loader row says the data share and the worker count
    assert re.search(r"MiniLM bs4, tweets .* tok/s +[\d,]+ tok/s +\d+\.\d\d", out)
    assert re.search(r"image_loader .*data \d+% of time; 0 workers; 8 photos", out)
    assert re.search(r"NCCL, 2 processes +not run", out) and re.search(r"pytest -m cuda +not run", out)
