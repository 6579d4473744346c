"""The U-Net against a plain intensity threshold on the embedded nuclei tiles, both scored on the 16 held-out test
tiles (``solution.csv``), which neither saw:

    python bench/bench_segmentation.py [--seeds 0,1,2] [--quick]

The baseline is what a competitor tries first on fluorescence nuclei: every pixel brighter than a cut is nucleus,
the cut chosen on the training tiles' masks (and Otsu's cut, chosen on nothing). The U-Net runs the default
command (``submit.py ADAPTER --data competitions/samples/nuclei-tiles``, 5 folds) once per seed; its held-out
Dice is its submission's. Prints mean +- std over seeds, the honest CV beside the held-out score, and wall times.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "competitions" / "samples" / "nuclei-tiles"
WEIGHTS = REPO.parent / "shared" / "weights"
ADAPTER = ('from kitbox import SegmentationCompetition\n\n\n'
           'class Nuclei(SegmentationCompetition):\n    slug = "nuclei-tiles"\n')

sys.path.insert(0, str(REPO))
from kitbox.io.rle import rle_decode  # noqa: E402
from kitbox.metrics import dice  # noqa: E402


def tiles(part: str, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(Image.open(DATA / part / "images" / f"{i}.png").convert("L")) for i in table["id"]])
    masks = np.stack([rle_decode(r, images.shape[1:]) for r in table["rle_mask"].fillna("")])
    return images, masks


def otsu(values: np.ndarray) -> float:
    hist = np.bincount(values.ravel(), minlength=256).astype(float)
    p, levels = hist / hist.sum(), np.arange(256)
    w0, mu = np.cumsum(p), np.cumsum(p * levels)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(np.argmax(between))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    train_x, train_y = tiles("train", pd.read_csv(DATA / "train.csv"))
    solution = pd.read_csv(DATA / "solution.csv")
    test_x, test_y = tiles("test", solution)
    cuts = np.arange(1, 255)
    best = max(cuts, key=lambda c: dice(train_y, train_x > c))
    print(f"threshold chosen on the training tiles: cut {best}, train Dice {dice(train_y, train_x > best):.4f}, "
          f"held-out Dice {dice(test_y, test_x > best):.4f}")
    cut = otsu(train_x)
    print(f"Otsu's threshold: cut {cut:.0f}, held-out Dice {dice(test_y, test_x > cut):.4f}")
    scores, honest, walls = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "nuclei.py"
        adapter.write_text(ADAPTER)
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = Path(tmp) / f"sub-{seed}.csv"
            cmd = [sys.executable, str(REPO / "submit.py"), str(adapter), "--data", str(DATA), "--seed", str(seed),
                   "--out", str(out), "--run-dir", str(Path(tmp) / "runs" / str(seed)), "--weights", str(WEIGHTS),
                   "--quiet"]
            start = time.perf_counter()
            subprocess.run(cmd + (["--quick"] if args.quick else []), check=True, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            sub = pd.read_csv(out).set_index("id").loc[solution["id"]]
            pred = np.stack([rle_decode(r, test_x.shape[1:]) for r in sub["rle_mask"].fillna("")])
            scores.append(dice(test_y, pred))
            metrics = sorted((Path(tmp) / "runs" / str(seed)).rglob("metrics.json"))[-1]
            honest.append(json.loads(metrics.read_text())["blend"]["score_honest"])
            print(f"U-Net seed {seed}: honest CV Dice {honest[-1]:.4f}, held-out Dice {scores[-1]:.4f}, "
                  f"{walls[-1]:.0f} s")
    print(f"U-Net over {len(scores)} seed(s): held-out Dice {np.mean(scores):.4f} +- {np.std(scores):.4f}, honest CV "
          f"{np.mean(honest):.4f} +- {np.std(honest):.4f}, wall {np.mean(walls):.0f} s")


if __name__ == "__main__":
    main()
