"""Rebuild this mini segmentation competition: ``python make_sample.py STARDIST_DATA_IMAGES_DIR``.

The source is the one fluorescence image of cell nuclei (512 x 512) and its hand-drawn instance mask that the
``stardist`` wheel ships in ``stardist/data/images/`` (``img2d.tif``, ``mask2d.tif``; from Kaggle's 2018 Data
Science Bowl, stage 1 training set; see SOURCE.md). It is cut into 64 tiles of 64 x 64 and laid out like TGS Salt:
``train/images/ID.png``, ``train.csv`` (id, rle_mask: nuclei as one binary mask, column-major RLE), ``test/images``,
``sample_submission.csv``. 16 tiles drawn with a fixed seed are the test set; their masks go to
``solution.csv`` (not a Kaggle file: the held-out answer the tests and the note score against).
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from kitbox.io.rle import rle_encode  # noqa: E402

src = Path(sys.argv[1])
out = Path(__file__).resolve().parent
image = np.array(Image.open(src / "img2d.tif"))
mask = np.array(Image.open(src / "mask2d.tif")) > 0
assert image.max() <= 255, "img2d.tif is expected to hold values 0..255"
side = 64
tiles = [(r, c) for r in range(0, image.shape[0], side) for c in range(0, image.shape[1], side)]
ids = [f"t{r // side}{c // side}" for r, c in tiles]
test = set(np.random.default_rng(0).choice(len(tiles), 16, replace=False).tolist())
rows = {"train": [], "test": []}
for i, ((r, c), tid) in enumerate(zip(tiles, ids)):
    part = "test" if i in test else "train"
    folder = out / part / "images"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[r:r + side, c:c + side].astype(np.uint8)).save(folder / f"{tid}.png", optimize=True)
    rows[part].append({"id": tid, "rle_mask": rle_encode(mask[r:r + side, c:c + side], order="F")})
pd.DataFrame(rows["train"]).to_csv(out / "train.csv", index=False)
pd.DataFrame(rows["test"]).to_csv(out / "solution.csv", index=False)
pd.DataFrame({"id": [r["id"] for r in rows["test"]], "rle_mask": "1 1"}).to_csv(out / "sample_submission.csv",
                                                                              index=False)
print(f"{len(rows['train'])} training tiles, {len(rows['test'])} test tiles in {out}")
